"""The one convention of the rule scripts: the rule's names are main's keyword arguments, logs
go to the rule's log, bad input is one line.

Every workflow script ends with

    if __name__ == "__main__":
        with rule_job(snakemake.log[0]):
            main(**rule_kwargs(snakemake, d=int, ...))

so the casts, the call and everything they say land in the rule's log; an `InputError` (a bad
file or config value, named in its message) becomes one ERROR line and exit status 1, while any
other exception is a bug and keeps its traceback. SIGTERM (what SLURM sends on preemption, at
the time limit and on scancel) removes the job's partial files and exits with status 143.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from coaddbliss.atomic import remove_live_partials
from coaddbliss.errors import InputError

log = logging.getLogger("coaddbliss")

#: The named input of every rule that is there for Snakemake alone: the library files its script
#: imports (script_sources in workflow/rules/common.smk), so that editing them reruns the rule.
CODE_INPUT = "code"


def list_of(cast: Callable[[Any], Any]) -> Callable[[list], list]:
    """A cast for rule_kwargs that casts every item of a list (`depths=list_of(int)`)."""
    return lambda values: [cast(v) for v in values]


def rule_kwargs(smk: Any, **casts: Callable[[Any], Any]) -> dict[str, Any]:
    """The job's named inputs (but `code`), outputs and params as keyword arguments of `main`.

    `casts` maps a name to its type or constructor (`d=int`, `band=tuple`) and brings in the
    wildcard of that name too; a list of files comes as a list of paths.
    """
    kwargs: dict[str, Any] = {}
    for section in (smk.input, smk.output, smk.params):
        for name, value in section.items():
            if section is smk.input and name == CODE_INPUT:
                continue
            if name in kwargs:
                raise ValueError(f"rule {smk.rule}: two of its inputs/outputs/params are {name!r}")
            kwargs[name] = list(value) if isinstance(value, list) else value
    for name, cast in casts.items():
        if name not in kwargs:
            if name not in smk.wildcards.keys():
                raise KeyError(f"rule {smk.rule} has no input, output, param or wildcard {name!r}")
            kwargs[name] = smk.wildcards[name]
        kwargs[name] = cast(kwargs[name])
    return kwargs


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


_JOB_PID: list[int] = []  # the process that installed the handler (not its forked workers)


def _terminated(signum: int, frame) -> None:
    """SIGTERM: remove the partial outputs, then unwind (with-blocks clean up) and exit 143."""
    if os.getpid() not in _JOB_PID:  # a forked worker: die as usual, leave the job's files
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
        return
    remove_live_partials()
    log.error("terminated by signal %d (SLURM preemption, time limit or scancel?); "
              "partial outputs removed", signum)  # fmt: skip
    raise SystemExit(128 + signum)


@contextlib.contextmanager
def rule_job(log_path: str | None) -> Iterator[logging.Logger]:
    """Run a script's block as a rule's job: logging to `log_path`, bad input as one line."""
    job_log = log_to_file(log_path)
    _JOB_PID[:] = [os.getpid()]
    signal.signal(signal.SIGTERM, _terminated)
    try:
        yield job_log
    except InputError as err:
        job_log.error("%s", err)
        sys.exit(1)
