"""The runner loses nothing when a notebook fails, says why first, and ends with a summary table."""
import json

import pytest

from replication import paths, runner


def _notebook(path, body):
    cells = [{"cell_type": "code", "id": "p", "metadata": {"tags": ["parameters"]}, "execution_count": None, "outputs": [],
              "source": "PROFILE = None\nFAIL = False"},
             {"cell_type": "code", "id": "b", "metadata": {}, "execution_count": None, "outputs": [], "source": body}]
    nb = {"cells": cells, "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
          "nbformat": 4, "nbformat_minor": 5}
    path.write_text(json.dumps(nb))


@pytest.fixture
def project(tmp_path, monkeypatch):
    nbs = tmp_path / "notebooks"
    nbs.mkdir()
    _notebook(nbs / "00_first.ipynb", "print('first ran')")
    _notebook(nbs / "01_second.ipynb", "if FAIL:\n    raise RuntimeError('the data is gone: put it back and rerun')\nprint('second ran')")
    monkeypatch.setattr(runner, "NOTEBOOKS_DIR", nbs)
    monkeypatch.setattr(paths, "PROJECT_ROOT", tmp_path)
    return tmp_path


def test_a_failed_run_keeps_the_last_good_copy_and_says_why_first(project, capsys):
    out = runner.run("smoke", None, {})
    assert [o.status for o in out] == ["ok", "ok"]
    executed = paths.executed_dir("smoke") / "01_second.ipynb"
    good = executed.read_bytes()
    capsys.readouterr()
    with pytest.raises(runner.NotebookFailed):
        runner.run("smoke", ["01"], {"FAIL": True})
    assert executed.read_bytes() == good  # byte-identical
    failed = executed.with_name("01_second.failed.ipynb")
    assert failed.exists() and "the data is gone" in failed.read_text()
    captured = capsys.readouterr()
    err = captured.err.splitlines()
    first = next(i for i, line in enumerate(err) if line.startswith("error:"))  # after the cells' progress bar
    assert err[first].startswith("error: 01_second.ipynb failed in cell 2")  # the papermill-injected cell is 1
    assert "RuntimeError: the data is gone: put it back and rerun" in err[first + 1]
    assert any("logs/runner-smoke-" in line for line in err[first:])
    assert "Traceback" not in captured.err  # the traceback is in the log, not in the reader's way
    table = captured.out.split("\n\n")[-1]
    assert table.splitlines()[0].split() == ["notebook", "status", "wall", "time", "new", "records", "figures", "next", "step"]
    meta = json.loads(executed.read_text())["metadata"]["papermill"]
    assert (meta["input_path"], meta["output_path"]) == ("notebooks/01_second.ipynb", "results/smoke/executed/01_second.ipynb")
    assert "01_second  failed" in table
    assert not list(executed.parent.glob(".*running*"))  # no temporary left behind
    runner.run("smoke", ["01"], {})
    assert not failed.exists()  # a later success removes the stale failure


def test_a_bad_parameter_creates_nothing(project):
    with pytest.raises(runner.UnknownParameterError):
        runner.run("full", None, {"BATCH": 3})
    assert not (project / "results").exists() and not (project / "logs").exists()
