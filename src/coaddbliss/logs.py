"""Logging for rule scripts: everything a job says goes to its own log file."""

from __future__ import annotations

import logging
import sys
from pathlib import Path


def log_to_file(path: str | None) -> logging.Logger:
    """Send stderr (tracebacks, tqdm bars, warnings) and the 'coaddbliss' logger to `path`.

    With no path (a script run by hand) everything stays on the terminal.
    """
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        sys.stderr = open(path, "w", buffering=1)  # noqa: SIM115 (lives as long as the job)
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        force=True,
    )
    return logging.getLogger("coaddbliss")
