"""Execute the numbered notebooks with papermill: `python -m replication.runner --profile cpu`.

Executed copies go to results/executed/<profile>/ (smoke: results/smoke/executed/), never over
the source notebooks, and only a successful run replaces one: a failed run is kept beside it as
<name>.failed.ipynb, its error is printed first (notebook, cell, exception, what to do) and its
traceback goes to logs/. Unknown profiles and unknown parameters are errors, not warnings, and
create nothing. Each notebook shows its cells' progress; the run ends with a summary table.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from .paths import NOTEBOOKS_DIR, executed_dir
from .profiles import ENV_VAR, resolve_profile
from .progress import BATCH_ENV
from .results import DirtyTreeError, require_clean_tree


class UnknownParameterError(ValueError):
    pass


def notebooks(selection: list[str] | None = None) -> list[Path]:
    all_nbs = sorted(NOTEBOOKS_DIR.glob("[0-9][0-9]_*.ipynb"))
    if not selection:
        return all_nbs
    picked = [nb for nb in all_nbs if any(nb.name.startswith(s) or nb.stem == s for s in selection)]
    if len(picked) != len(selection):
        raise SystemExit(f"Unknown notebook in {selection}; available: {[nb.stem for nb in all_nbs]}")
    return picked


def declared_parameters(nb: Path) -> dict:
    import papermill

    return papermill.inspect_notebook(str(nb))


def check_parameters(nb: Path, params: dict) -> None:
    declared = declared_parameters(nb)
    unknown = sorted(set(params) - set(declared))
    if unknown:
        raise UnknownParameterError(
            f"{nb.name} has no parameter(s) {unknown}; its parameters cell declares {sorted(declared)}.")


def default_profile() -> str:
    import torch

    if os.environ.get(ENV_VAR):
        return resolve_profile(None)
    if torch.cuda.is_available():
        print("A CUDA GPU is present: running the 'full' profile (override with PROFILE=cpu or smoke).")
        return "full"
    print("No CUDA GPU: running the 'smoke' profile (PROFILE=cpu make reproduce runs the reported "
          "reduced-scale replication, about an hour per notebook on 2 cores).")
    return "smoke"


@dataclass
class Outcome:
    notebook: str
    status: str = "not run"   # ok | failed | not run
    wall_s: float | None = None
    records: int = 0           # records this run measured (reused ones keep the run that measured them)
    figures: int = 0           # figure files this run wrote
    next_step: str = ""
    error: str = ""


def _new_records(profile: str, experiment: str, runs_before: set[str]) -> int:
    from .results import load_results, results_path

    if not results_path(experiment, profile).exists():
        return 0
    doc = load_results(experiment, profile)
    new = {r["run_id"] for r in doc["runs"]} - runs_before
    return sum(r["run_id"] in new for r in doc["records"])


def _runs(profile: str, experiment: str) -> set[str]:
    from .results import load_results, results_path

    return {r["run_id"] for r in load_results(experiment, profile)["runs"]} if results_path(experiment, profile).exists() else set()


def _figures_since(profile: str, prefix: str, t0: float) -> int:
    from .paths import figures_dir

    return sum(1 for f in figures_dir(profile).glob(f"{prefix}_*") if f.stat().st_mtime >= t0)


def summary_table(outcomes: list[Outcome]) -> str:
    rows = [("notebook", "status", "wall time", "new records", "figures", "next step")]
    for o in outcomes:
        wall = "–" if o.wall_s is None else (f"{o.wall_s:.0f} s" if o.wall_s < 120 else f"{o.wall_s / 60:.1f} min")
        rows.append((o.notebook, o.status, wall, str(o.records), str(o.figures), o.next_step))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


def execute_one(nb: Path, out: Path, profile: str, params: dict, log: Path, log_output: bool) -> None:
    """Execute `nb` into a temporary file beside `out`; only a successful run replaces `out`. A failed
    run is kept as <name>.failed.ipynb (and its traceback appended to `log`); `out` is untouched."""
    import papermill

    tmp = out.with_name(f".{out.stem}.running.ipynb")
    failed = out.with_name(f"{out.stem}.failed.ipynb")
    try:
        papermill.execute_notebook(str(nb), str(tmp), parameters={"PROFILE": profile, **params},
                                   kernel_name="python3", cwd=str(NOTEBOOKS_DIR), progress_bar=True,
                                   log_output=log_output)
    except BaseException as exc:
        if tmp.exists():
            os.replace(tmp, failed)
        with open(log, "a") as f:
            f.write(f"==== {nb.name} ({profile}) failed ====\n{exc}\n")
        raise
    _relative_paths(tmp, nb, out)
    os.replace(tmp, out)
    failed.unlink(missing_ok=True)


def _relative_paths(executed: Path, source: Path, out: Path) -> None:
    """papermill records absolute input/output paths (the author's home, a temporary name): store
    them relative to the project instead."""
    import nbformat

    from .paths import PROJECT_ROOT

    doc = nbformat.read(str(executed), as_version=4)
    meta = doc.metadata.get("papermill", {})
    for key, path in (("input_path", source), ("output_path", out)):
        try:
            meta[key] = str(Path(path).resolve().relative_to(Path(PROJECT_ROOT).resolve()))
        except ValueError:
            meta[key] = Path(path).name
    nbformat.write(doc, str(executed))


def explain_failure(nb: Path, exc: BaseException, failed: Path, log: Path, profile: str) -> str:
    """The one useful paragraph: which notebook and cell, the exception's own message, what to do."""
    from papermill.exceptions import PapermillExecutionError

    if isinstance(exc, PapermillExecutionError):
        first = (exc.source or "").strip().splitlines()
        where = f"cell {exc.cell_index} (In [{exc.exec_count}]: {first[0][:80] if first else ''})"
        what = f"{exc.ename}: {exc.evalue}"
    else:
        where, what = "before or between cells", f"{type(exc).__name__}: {exc}"
    return (f"error: {nb.name} failed in {where}\n  {what}\n"
            f"  The failed run is kept as {failed}; the last good executed copy is unchanged.\n"
            f"  Full traceback: {log}\n"
            f"  After fixing the cause: python -m replication.runner --profile {profile} {nb.stem[:2]}")


def run(profile: str | None, selection: list[str] | None, params: dict, log_output: bool = False) -> list[Outcome]:
    """Execute the selected notebooks in order; stop at the first failure; print a summary table."""
    from .paths import PROJECT_ROOT

    profile = resolve_profile(profile) if profile else default_profile()
    require_clean_tree(profile)
    nbs = notebooks(selection)
    for nb in nbs:  # check every notebook's parameters before running (or creating) anything
        check_parameters(nb, {"PROFILE": profile, **params})
    os.environ[ENV_VAR] = profile  # helper processes the notebooks start see the same profile
    os.environ[BATCH_ENV] = "1"  # stored outputs: one summary line per loop, no per-step bars
    out_dir = executed_dir(profile)
    out_dir.mkdir(parents=True, exist_ok=True)
    log = PROJECT_ROOT / "logs" / f"runner-{profile}-{time.strftime('%Y%m%dT%H%M%S')}.log"
    log.parent.mkdir(exist_ok=True)
    outcomes = [Outcome(nb.stem, next_step="run it after the failure above is fixed") for nb in nbs]
    for i, (nb, o) in enumerate(zip(nbs, outcomes)):
        t0, wall0 = time.perf_counter(), time.time()
        runs_before = _runs(profile, nb.stem)
        print(f"[{profile}] {nb.name} ({i + 1}/{len(nbs)}) ...", flush=True)
        out = out_dir / nb.name
        try:
            execute_one(nb, out, profile, params, log, log_output)
            o.status = "ok"
            o.next_step = (f"next: {nbs[i + 1].stem}" if i + 1 < len(nbs)
                           else f"python -m replication.report --profile {profile} --update-readme")
        except Exception as exc:  # noqa: BLE001 (every failure is reported the same way, then re-raised)
            o.status, o.error = "failed", explain_failure(nb, exc, out.with_name(f"{out.stem}.failed.ipynb"), log, profile)
            o.next_step = f"see the error above; rerun: python -m replication.runner --profile {profile} {nb.stem[:2]}"
        finally:
            o.wall_s = time.perf_counter() - t0
            o.records = _new_records(profile, nb.stem, runs_before)
            o.figures = _figures_since(profile, nb.stem[:2], wall0)
        if o.status == "failed":
            print(o.error, file=sys.stderr, flush=True)
            break
        print(f"[{profile}] {nb.name} done in {o.wall_s:.0f} s -> {out}", flush=True)
    print("\n" + summary_table(outcomes), flush=True)
    if any(o.status == "failed" for o in outcomes):
        raise NotebookFailed(next(o.error for o in outcomes if o.status == "failed"))
    return outcomes


class NotebookFailed(RuntimeError):
    pass


def _literal(value: str):
    import ast

    try:
        return ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return value


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default=None, help="smoke | cpu | full (default: full with a GPU, else smoke)")
    ap.add_argument("notebooks", nargs="*", help="prefixes such as 00 01 (default: all, in order)")
    ap.add_argument("-p", "--param", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                    help="a papermill parameter (Python literal)")
    ap.add_argument("--log-output", action="store_true", help="stream cell output to the terminal")
    args = ap.parse_args(argv)
    try:
        run(args.profile or None, args.notebooks, {k: _literal(v) for k, v in args.param}, args.log_output)
    except NotebookFailed as exc:
        raise SystemExit(1) from exc  # the error and the summary are printed already
    except (UnknownParameterError, ValueError, DirtyTreeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from exc


if __name__ == "__main__":
    main()
