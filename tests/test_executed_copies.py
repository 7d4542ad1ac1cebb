"""The committed `cpu` executed copies are their sources, run: the same code cells (apart from
papermill's injected parameters), no stderr output and no absolute path.

STALE lists the copies not yet regenerated on today's code (issue 26): each is checked to be stale
still, so a regenerated copy must leave the list, and every copy not on it must pass.
"""
from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest

from replication.paths import NOTEBOOKS_DIR, PROJECT_ROOT

EXECUTED = Path(PROJECT_ROOT) / "results" / "executed" / "cpu"
SOURCES = sorted(NOTEBOOKS_DIR.glob("[0-9][0-9]_*.ipynb"))
# regenerate with `python -m replication.runner --profile cpu NN`, then remove the name here
STALE: set[str] = set()
# notebooks whose `cpu` run has not finished yet, and why: each is checked to have no executed copy,
# so the entry goes when the copy is committed
NOT_YET_RUN = {"11_scaling": "its background tasks (python -m replication.paper_a.scaling --profile cpu) "
                             "take about 20 h on 2 cores and resume across sessions"}
# a path on the machine that ran the notebook (a home, a venv, a temporary folder)
ABSOLUTE = re.compile(r"(?<![\w.~])/(?:root|home|Users|tmp|work|opt|usr|var|private|mnt)/[\w.-]")


def code_cells(nb: dict) -> list[str]:
    return ["".join(c["source"]) for c in nb["cells"]
            if c["cell_type"] == "code" and "injected-parameters" not in c.get("metadata", {}).get("tags", [])]


def problems(source: dict, executed: dict) -> list[str]:
    """What makes `executed` not a clean run of `source` (empty: it is one)."""
    out = []
    a, b = code_cells(source), code_cells(executed)
    if a != b:
        differ = [i for i, (x, y) in enumerate(zip(a, b)) if x != y]
        out.append(f"code cells differ from the source ({len(a)} vs {len(b)} cells; first differing: "
                   f"{differ[:3] or 'count'})")
    stderr = [c.get("execution_count") for c in executed["cells"] if c["cell_type"] == "code"
              for o in c.get("outputs", []) if o.get("output_type") == "stream" and o.get("name") == "stderr"]
    if stderr:
        out.append(f"{len(stderr)} stderr outputs (cells {sorted(set(map(str, stderr)))[:5]})")
    found = ABSOLUTE.findall(json.dumps(executed))
    if found:
        out.append(f"absolute paths: {sorted(set(found))[:3]}")
    return out


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_committed_cpu_copy_is_its_source_run(source):
    path = EXECUTED / source.name
    if source.stem in NOT_YET_RUN:
        assert not path.exists(), f"{path.name} is committed now: remove it from NOT_YET_RUN"
        pytest.skip(f"{source.stem} has not finished in cpu: {NOT_YET_RUN[source.stem]}")
    assert path.exists(), f"no committed cpu executed copy of {source.name}"
    found = problems(json.loads(source.read_text()), json.loads(path.read_text()))
    if source.stem in STALE:
        assert found, f"{source.stem} is clean now: remove it from STALE"
    else:
        assert not found, f"{path}: " + "; ".join(found)


def test_a_hand_made_stale_copy_is_caught():
    source = json.loads(SOURCES[0].read_text())
    executed = copy.deepcopy(source)
    assert problems(source, executed) == []
    cell = next(c for c in executed["cells"] if c["cell_type"] == "code" and "parameters" not in c["metadata"].get("tags", []))
    cell["source"] = ["x = 1  # an edit the source does not have\n"] + list(cell["source"])
    assert any("code cells differ" in p for p in problems(source, executed))
    fresh = copy.deepcopy(source)
    fresh["cells"].insert(1, {"cell_type": "code", "metadata": {"tags": ["injected-parameters"]}, "source": ["PROFILE = 'cpu'\n"],
                              "outputs": [], "execution_count": 1})
    assert problems(source, fresh) == []  # papermill's injected parameters are not a difference
    noisy = copy.deepcopy(fresh)
    noisy["cells"][1]["outputs"] = [{"output_type": "stream", "name": "stderr",
                                     "text": "/root/.venv/lib/python3.11/site-packages/tqdm/auto.py: TqdmWarning\n"}]
    assert {p.split(" ")[1] for p in problems(source, noisy)} >= {"stderr", "paths:"}
