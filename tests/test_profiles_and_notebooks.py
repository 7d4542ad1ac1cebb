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
    "05_lipschitz_bound": {"PROFILE", "SEED", "EPS_TRAIN"},
    "06_robustness_curves": {"PROFILE", "SEED", "EPS_TRAIN", "PAPER_EPS", "EXTRA_EPS", "STRONG_PAPER_EPS",
                             "STRONG_EXTRA_EPS", "SQUARE_EPS", "AUTOATTACK_EPS", "LARGE_EPS"},
    "07_cifar10c_table": {"PROFILE", "SEED", "EPS_TRAIN"},
    "08_ddpm_training": {"PROFILE", "SEED", "T_MAX", "FOCUS", "PSNR_TS", "T_STARS", "QUALITY_STEPS", "SAMPLE_STEPS"},
    "09_purification_and_adversarial_training": {"PROFILE", "SEED", "EPS", "PAPER_A_EPS", "LARGE_EPS", "T_STAR", "STEPS",
                                                 "GRID_T_STARS", "GRID_STEPS", "DDIM_STEPS", "T_MAX", "FOCUS", "GPU_TFLOPS"},
    "11_scaling": {"PROFILE", "SEED", "HOURS", "FIGURE_POINTS"},
    "10_attribution_stability": {"PROFILE", "SEED", "EPS", "PAPER_A_EPS", "LARGE_EPS", "T_STAR", "STEPS", "T_MAX", "FOCUS",
                                 "CROSSCHECK_MAPS", "EXAMPLES", "IMAGENET_ROOT", "IMAGENET_WEIGHTS", "IMAGENET_IMAGES",
                                 "IMAGENET_EPS"},
    "12_report": {"PROFILE", "SEED"},
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


def test_every_profile_is_complete_and_frozen():
    for name in profiles.profile_names():
        p = profiles.get_profile(name)
        assert p.name == name and {"resnet18", "resnet50", "wrn28_10"} <= set(p.models)
        assert profiles.parse_profile(name, {k: v for k, v in p.to_dict().items() if k != "name"}) == p
        with pytest.raises(Exception):
            p.refine.epochs = 99  # frozen: a notebook cannot change a profile in place
    assert profiles.get_profile("cpu").with_refine(epochs=2).refine.epochs == 2


def test_a_bad_profile_names_the_file_and_the_key():
    raw = {k: v for k, v in profiles.get_profile("smoke").to_dict().items() if k != "name"}
    with pytest.raises(profiles.ProfileError, match=r"profiles.yaml: x.refine: unknown key\(s\) \['epoch'\]"):
        profiles.parse_profile("x", {**raw, "refine": {**raw["refine"], "epoch": 1}})
    with pytest.raises(profiles.ProfileError, match=r"x.models.resnet18: missing key\(s\) \['lr'\]"):
        profiles.parse_profile("x", {**raw, "models": {"resnet18": {"width": 4, "epochs": 1, "batch_size": 8}}})
    with pytest.raises(profiles.ProfileError, match=r"x: missing key\(s\) \['pgd'\]"):
        profiles.parse_profile("x", {k: v for k, v in raw.items() if k != "pgd"})


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


@pytest.mark.parametrize("nb", sorted(NOTEBOOKS_DIR.glob("[0-9][0-9]_*.ipynb")), ids=lambda p: p.stem)
def test_run_captures_exactly_the_parameters_cell(nb, monkeypatch):
    """notebook.start reads the notebook's parameters itself: what the Run records as its params is
    exactly what the parameters cell declares, with the cell's values."""
    from replication import notebook

    monkeypatch.setenv("REPLICATION_PROFILE", "smoke")
    cells = json.loads(nb.read_text())["cells"]
    source = "".join(next(c for c in cells if "parameters" in c.get("metadata", {}).get("tags", []))["source"])
    namespace: dict = {"notebook": notebook}
    exec(source, namespace)
    exec(f"run = notebook.start({nb.stem!r})", namespace)
    run = namespace["run"]
    assert run.params == {k: namespace[k] for k in EXPECTED_PARAMETERS[nb.stem]}
    assert run.profile.name == "smoke" and run.seed == namespace["SEED"]


def test_a_reader_may_start_in_a_dirty_tree_but_a_writer_may_not(monkeypatch):
    """start(writes=False) (scaling --list) skips the clean-tree check that a cpu run must pass."""
    from replication import notebook, results

    monkeypatch.delenv(results.ALLOW_DIRTY_ENV, raising=False)
    monkeypatch.setattr(results, "code_changes", lambda: ["replication/m.py"])
    with pytest.raises(results.DirtyTreeError, match="replication/m.py"):
        notebook.start("e", {"PROFILE": "cpu", "SEED": 0})
    assert notebook.start("e", {"PROFILE": "cpu", "SEED": 0}, writes=False).profile.name == "cpu"


def test_check_fails_on_impossible_numbers():
    from replication import notebook
    from replication.attacks import Attack
    from replication.profiles import get_profile

    def run_with(*values):
        run = notebook.Run("e", get_profile("smoke"), 0, {}, None)
        clean, fgsm_small, fgsm_big = values
        run.record(model="m", data="cifar10", metric="accuracy", value=clean, n=100)
        for eps, v in ((0.01, fgsm_small), (0.03, fgsm_big)):
            run.record(model="m", data="cifar10", metric="accuracy", value=v, n=100, attack=Attack("fgsm").spec(eps), eps=eps)
        return run

    run_with(0.9, 0.5, 0.3).check(metrics={"accuracy": 3})
    run_with(0.9, 0.5, 0.51).check()  # one image's worth of noise is allowed (slack 2 images)
    for values, why in (((0.5, 0.9, 0.3), "above clean"), ((0.9, 0.3, 0.5), "rises"), ((1.2, 0.5, 0.3), "outside")):
        with pytest.raises(notebook.CheckFailed, match=why):
            run_with(*values).check()
    run_with(0.9, 0.3, 0.5).check(monotone=("pgd",))  # FGSM exempt from monotonicity, as notebook 07 asks
    with pytest.raises(notebook.CheckFailed, match="above clean"):
        run_with(0.5, 0.9, 0.3).check(monotone=("pgd",))  # but never from clean >= attacked
    with pytest.raises(notebook.CheckFailed, match="expected 4"):
        run_with(0.9, 0.5, 0.3).check(metrics={"accuracy": 4})
    with pytest.raises(notebook.CheckFailed, match="invariant failed: the sky is green"):
        run_with(0.9, 0.5, 0.3).check(**{"the sky is green": False})


def test_tables_show_an_en_dash_where_a_column_does_not_apply():
    import pandas as pd

    from replication import notebook

    df = pd.DataFrame({"clean": [90.0, 80.0], "apgd-ce-20 @ 0.01": [40.0, float("nan")]}, index=["a", "b"])
    assert "NaN" not in notebook.frame_html(df) and "–" in notebook.frame_html(df)
    assert "NaN" not in notebook.frame_text(df) and "–" in notebook.frame_text(df)
