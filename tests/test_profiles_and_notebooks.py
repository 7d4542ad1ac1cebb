import ast
import json
import subprocess
import sys

import pytest

from replication import profiles, runner
from replication.paths import NOTEBOOKS_DIR

EXPECTED_PARAMETERS = {
    "00_setup_and_data": {"PROFILE", "SEED"},
    "01_baseline_training": {"PROFILE", "SEED", "MODELS", "ATTACKS", "EPS_GRID", "EPS_NORMALISED_CHECK"},
    "02_lime_analysis": {"PROFILE", "SEED", "SEGMENTATION", "N_SEGMENTS", "HIDE_COLOR", "KERNEL", "KERNEL_WIDTH",
                         "RIDGE_ALPHA"},
    "03_spurious_features": {"PROFILE", "SEED", "TAU_Q", "SUPPORT_Q", "EPS_Q", "DELTA_Q", "PERTURB_SIGMA"},
    "04_refinement_training": {"PROFILE", "SEED", "EPS_TRAIN", "ALPHA", "LAMBDA", "TOL_ACC", "TOL_JACCARD",
                               "EXTRA_SEEDS", "LAMBDA_SWEEP"},
}


def test_profiles_resolve_and_unknown_is_an_error(monkeypatch):
    assert set(profiles.profile_names()) >= {"smoke", "cpu", "full"}
    monkeypatch.setenv(profiles.ENV_VAR, "cpu")
    assert profiles.resolve_profile(None) == "cpu"
    assert profiles.resolve_profile("full") == "full"
    with pytest.raises(profiles.UnknownProfileError, match="Choose one of"):
        profiles.resolve_profile("gpu-please")
    monkeypatch.setenv(profiles.ENV_VAR, "nonsense")
    with pytest.raises(profiles.UnknownProfileError):
        profiles.get_profile()


def test_every_profile_has_every_key():
    keys = {"description", "n_train", "n_test", "n_test_reference", "eval_batch_size", "models", "pgd", "lime",
            "datasets"}
    for name in profiles.profile_names():
        p = profiles.get_profile(name)
        assert keys <= set(p), name
        assert {"resnet18", "resnet50", "wrn28_10"} <= set(p["models"])


@pytest.mark.parametrize("nb", sorted(NOTEBOOKS_DIR.glob("[0-9][0-9]_*.ipynb")), ids=lambda p: p.stem)
def test_notebook_has_one_literal_parameters_cell(nb):
    cells = json.loads(nb.read_text())["cells"]
    tagged = [c for c in cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1
    names = set()
    for stmt in ast.parse("".join(tagged[0]["source"])).body:
        assert isinstance(stmt, ast.Assign), "parameters cell holds assignments only"
        ast.literal_eval(stmt.value)  # literals only
        names |= {t.id for t in stmt.targets}
    assert names == EXPECTED_PARAMETERS[nb.stem]
    assert set(runner.declared_parameters(nb)) == names, "papermill must parse every parameter (no quotes or parentheses in comments)"
    assert all(not c.get("outputs") or "NBVAL_CHECK_OUTPUT" in "".join(c["source"])
               for c in cells if c["cell_type"] == "code"), "source notebooks store no outputs but checked ones"


def test_unknown_papermill_parameter_is_an_error():
    with pytest.raises(runner.UnknownParameterError, match="BATCH"):
        runner.check_parameters(NOTEBOOKS_DIR / "01_baseline_training.ipynb", {"PROFILE": "smoke", "BATCH": 3})
    runner.check_parameters(NOTEBOOKS_DIR / "01_baseline_training.ipynb", {"PROFILE": "smoke", "SEED": 1})


def test_runner_cli_rejects_bad_input_before_running_anything():
    for args in (["--profile", "nope", "00"], ["--profile", "smoke", "-p", "BOGUS", "1", "00"]):
        out = subprocess.run([sys.executable, "-m", "replication.runner", *args], capture_output=True, text=True)
        assert out.returncode == 2, out.stderr
        assert "error:" in out.stderr
