"""Write outputs so that a job killed half-way leaves nothing that looks complete, nor litter.

A file is written as a hidden sibling `.NAME.partial-HOST-PID` and renamed onto NAME when done.
What removes the partial when the job does not finish:
- an exception (a bug, bad input, a full disk): `atomic_path`'s own clean-up;
- SIGTERM (SLURM preemption, time limit, scancel): `scripting.rule_job`'s handler calls
  `remove_live_partials` and exits;
- SIGKILL, a crashed node: nothing can run, so every `atomic_path` first sweeps its directory of
  partials whose writer is dead: same host and no such PID. A partial of a live process, or of
  another host (a shared cluster file system) whose liveness cannot be checked, is left alone
  unless nobody has touched it for `STALE_AFTER_S` seconds (writers stream chunks every few
  seconds, or write in one go).
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

from coaddbliss.errors import OutputError

#: errno values that mean "no room to write": the disk, the quota or the file-size limit.
NO_ROOM = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT}
#: A partial of another host is a dead writer's after this long without a write, seconds.
STALE_AFTER_S = 24 * 3600.0
PARTIAL_TAG = ".partial-"

_HOST = socket.gethostname().replace("-", "_") or "localhost"  # '-' separates host from PID
#: Partials this process is writing now: what the SIGTERM handler removes.
_LIVE: set[Path] = set()


def partial_path(path: Path) -> Path:
    """The hidden sibling this process writes `path` into."""
    return path.with_name(f".{path.name}{PARTIAL_TAG}{_HOST}-{os.getpid()}")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def _writer_is_dead(partial: Path, now: float) -> bool:
    """True for a partial whose writer certainly stopped; False when in doubt."""
    owner = partial.name.rpartition(PARTIAL_TAG)[2]  # 'HOST-PID' (or 'PID' before hosts)
    host, _, pid = owner.rpartition("-")
    if not pid.isdigit():
        return False  # not one of ours
    if host in ("", _HOST):
        return int(pid) != os.getpid() and not _pid_alive(int(pid))
    try:
        return now - partial.stat().st_mtime > STALE_AFTER_S
    except FileNotFoundError:
        return False


def remove_stale_partials(directory: str | os.PathLike) -> list[Path]:
    """Remove the partial files of dead writers in `directory`; return what was removed."""
    removed, now = [], time.time()
    with contextlib.suppress(FileNotFoundError):
        for partial in Path(directory).glob(f".*{PARTIAL_TAG}*"):
            if _writer_is_dead(partial, now):
                with contextlib.suppress(FileNotFoundError):  # another sweeper was first
                    partial.unlink()
                    removed.append(partial)
    return removed


def remove_live_partials() -> None:
    """Remove every partial this process has open (on SIGTERM, before exiting)."""
    for tmp in list(_LIVE):
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary sibling path; rename it onto `path` only if the block succeeds.

    Snakemake (and a user) sees either the old state or the finished file, never a partial one.
    A full disk (or quota, or file-size limit) becomes an `OutputError` naming `path`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_partials(path.parent)
    tmp = partial_path(path)
    _LIVE.add(tmp)
    try:
        yield tmp
        os.replace(tmp, path)
    except OSError as err:
        if err.errno not in NO_ROOM:
            raise
        raise OutputError(f"{path}: cannot write it, no room ({err.strerror})") from err
    finally:
        _LIVE.discard(tmp)
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
