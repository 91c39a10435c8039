"""Where the harness keeps things by default: the run store, and the throughput table the
plan prices with. Plain paths, importable without torch (the plugin's options name them).

Both are relative: the store to the working directory (``$CNNCONV_STORE`` moves it), the
throughput table to the project's root -- pytest's rootdir, a checkout's top -- so that an
installed cnnconv finds the table of the project it runs in, not of its own source.
"""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_STORE = Path(".cnnconv") / "runs"
THROUGHPUT_TABLE = Path("benchmarks") / "results" / "throughput.json"


def default_store_dir() -> Path:
    """``$CNNCONV_STORE``, else ``.cnnconv/runs`` under the working directory."""
    return Path(os.environ.get("CNNCONV_STORE") or DEFAULT_STORE)
