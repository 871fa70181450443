"""The one convention of the rule scripts: logs go to the rule's log, bad input is one line.

Every workflow script ends with

    if __name__ == "__main__":
        with rule_job(snakemake.log[0]):
            main(d=int(snakemake.wildcards.d), ...)

so the casts, the call and everything they say land in the rule's log; an `InputError` (a bad
file or config value, named in its message) becomes one ERROR line and exit status 1, while any
other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator
from pathlib import Path

from coaddbliss.errors import InputError

log = logging.getLogger("coaddbliss")


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
    return log


@contextlib.contextmanager
def rule_job(log_path: str | None) -> Iterator[logging.Logger]:
    """Run a script's block as a rule's job: logging to `log_path`, bad input as one line."""
    job_log = log_to_file(log_path)
    try:
        yield job_log
    except InputError as err:
        job_log.error("%s", err)
        sys.exit(1)
