"""Execute the numbered notebooks with papermill: `python -m replication.runner --profile cpu`.

Executed copies go to results/executed/<profile>/ (smoke: results/smoke/executed/), never over
the source notebooks. Unknown profiles and unknown parameters are errors, not warnings.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from .paths import NOTEBOOKS_DIR, executed_dir
from .profiles import ENV_VAR, resolve_profile
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


def run(profile: str | None, selection: list[str] | None, params: dict, log_output: bool = False) -> list[Path]:
    import papermill

    profile = resolve_profile(profile) if profile else default_profile()
    require_clean_tree(profile)
    os.environ[ENV_VAR] = profile  # helper processes the notebooks start see the same profile
    out_dir = executed_dir(profile)
    out_dir.mkdir(parents=True, exist_ok=True)
    nbs = notebooks(selection)
    for nb in nbs:  # check every notebook's parameters before running any
        check_parameters(nb, {"PROFILE": profile, **params})
    done = []
    for nb in nbs:
        t0 = time.perf_counter()
        print(f"[{profile}] {nb.name} ...", flush=True)
        out = out_dir / nb.name
        papermill.execute_notebook(str(nb), str(out), parameters={"PROFILE": profile, **params},
                                   kernel_name="python3", cwd=str(NOTEBOOKS_DIR), progress_bar=False,
                                   log_output=log_output)
        print(f"[{profile}] {nb.name} done in {time.perf_counter() - t0:.0f} s -> {out}", flush=True)
        done.append(out)
    return done


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
    except (UnknownParameterError, ValueError, DirtyTreeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from exc


if __name__ == "__main__":
    main()
