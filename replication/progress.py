"""Progress bars: live bars (ipywidgets in JupyterLab, text in a terminal) when a person watches,
none in batch runs. The runner sets REPLICATION_BATCH=1 for the notebooks it executes, so the
executed copies store one summary line per loop instead of hundreds of bar updates."""
from __future__ import annotations

import os

from tqdm.auto import tqdm

BATCH_ENV = "REPLICATION_BATCH"


def batch_mode() -> bool:
    return os.environ.get(BATCH_ENV) == "1"


def bar(iterable, *, desc: str, enabled: bool = True, **kw):
    return tqdm(iterable, desc=desc, disable=not enabled or batch_mode(), **kw)
