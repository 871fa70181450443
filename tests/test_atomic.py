"""Atomic writes leave no litter: SIGTERM cleans up, SIGKILL's partials are swept, full disks."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from coaddbliss.atomic import STALE_AFTER_S, atomic_path, partial_path

SRC = Path(__file__).resolve().parents[1] / "src"

#: A job that opens a partial of `out.bin` (1 MB written), says so, and waits to be killed.
WRITER = """
import sys, time
from coaddbliss.atomic import atomic_path
from coaddbliss.scripting import rule_job

with rule_job(sys.argv[2] or None):
    with atomic_path(sys.argv[1]) as tmp:
        tmp.write_bytes(b"x" * 1_000_000)
        print("writing", flush=True)
        time.sleep(60)
"""


def start_writer(out: Path, log: str = "") -> subprocess.Popen:
    """A job writing `out`, stopped half-way: its partial exists when this returns."""
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(out), log],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(SRC)},
    )  # fmt: skip
    assert proc.stdout.readline() == "writing\n"
    return proc


def litter(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".partial-" in p.name)


def test_sigterm_removes_the_partial_and_says_so(tmp_path):
    proc = start_writer(tmp_path / "out.bin", str(tmp_path / "job.log"))
    assert len(litter(tmp_path)) == 1
    proc.send_signal(signal.SIGTERM)  # SLURM preemption, time limit, scancel
    assert proc.wait(timeout=30) == 128 + signal.SIGTERM
    assert litter(tmp_path) == [] and not (tmp_path / "out.bin").exists()
    assert "terminated by signal 15" in (tmp_path / "job.log").read_text()


def test_sigkill_partial_is_swept_by_the_next_write(tmp_path):
    proc = start_writer(tmp_path / "out.bin")
    proc.send_signal(signal.SIGKILL)  # no clean-up can run
    proc.wait(timeout=30)
    assert len(litter(tmp_path)) == 1  # what a killed job leaves
    with atomic_path(tmp_path / "other.bin") as tmp:  # any later write in the folder
        tmp.write_bytes(b"done")
    assert litter(tmp_path) == []
    assert (tmp_path / "other.bin").read_bytes() == b"done"


def test_a_live_writers_partial_is_never_swept(tmp_path):
    proc = start_writer(tmp_path / "out.bin")
    try:
        theirs = litter(tmp_path)
        with atomic_path(tmp_path / "out.bin") as tmp:  # even a concurrent write of the same file
            tmp.write_bytes(b"mine")
        assert litter(tmp_path) == theirs
    finally:
        proc.kill()
        proc.wait(timeout=30)


def test_other_hosts_partials_are_swept_only_when_long_untouched(tmp_path):
    fresh = tmp_path / ".a.fits.partial-node_7-123"
    old = tmp_path / ".b.fits.partial-node_7-456"
    foreign = tmp_path / ".c.fits.partial-notes"  # not one of ours: never touched
    for path in (fresh, old, foreign):
        path.write_bytes(b"x")
    long_ago = time.time() - STALE_AFTER_S - 60
    os.utime(old, (long_ago, long_ago))
    os.utime(foreign, (long_ago, long_ago))
    with atomic_path(tmp_path / "d.fits") as tmp:
        tmp.write_bytes(b"x")
    assert litter(tmp_path) == sorted([foreign.name, fresh.name])


def test_this_process_partial_name_and_exception_cleanup(tmp_path):
    out = tmp_path / "cat.parquet"
    assert partial_path(out).name.startswith(".cat.parquet.partial-")
    assert partial_path(out).name.endswith(f"-{os.getpid()}")
    with pytest.raises(RuntimeError), atomic_path(out) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError
    assert list(tmp_path.iterdir()) == []


#: Writes under a 64 kB file-size limit: the kernel refuses with EFBIG, as a full disk with ENOSPC.
NO_ROOM = """
import resource, signal, sys
import numpy as np, pandas as pd
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # else the process dies instead of seeing EFBIG
resource.setrlimit(resource.RLIMIT_FSIZE, (65536, 65536))
from coaddbliss.errors import OutputError
from coaddbliss.images import write_cube
from coaddbliss.catalog import write_catalog
from coaddbliss.plotting import save_figure
import matplotlib.pyplot as plt

def cube():
    write_cube("d5.fits", [np.ones((4, 88, 88))], n_images=4, image_shape=(88, 88),
               cards={"D": 5, "BKG": 865.0})

def catalog():
    n = 20_000
    rng = np.random.default_rng(0)
    write_catalog(pd.DataFrame({"image_id": np.arange(n), "x": rng.uniform(size=n),
                                "y": rng.uniform(size=n), "flux": rng.uniform(1, 2, n)}),
                  "truth.parquet")

def figure():
    fig = plt.figure()
    plt.plot(np.random.default_rng(0).uniform(size=200_000))
    save_figure(fig, "fig.png", "fig.pdf", dpi=50)

try:
    {"cube": cube, "catalog": catalog, "figure": figure}[sys.argv[1]]()
except OutputError as err:
    print(err)
"""


@pytest.mark.parametrize(("what", "name"), [("cube", "d5.fits"), ("catalog", "truth.parquet"),
                                            ("figure", "fig.p")])  # fmt: skip
def test_no_room_names_the_file_and_leaves_nothing(tmp_path, what, name):
    run = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(NO_ROOM), what], cwd=tmp_path, text=True,
        capture_output=True, env={**os.environ, "PYTHONPATH": str(SRC), "MPLBACKEND": "Agg"},
        timeout=120,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith(name) and ": cannot write it" in run.stdout
    assert litter(tmp_path) == []
    # a figure's PNG may be complete (it fitted); never a cut PDF, nor any partial
    assert [p.name for p in tmp_path.iterdir()] in ([], ["fig.png"])


def test_a_full_disk_enospc_names_the_file(tmp_path, monkeypatch):
    import errno

    import numpy as np
    import pyarrow.parquet as pq

    from coaddbliss.catalog import empty_catalog, write_catalog
    from coaddbliss.errors import OutputError
    from coaddbliss.images import CubeWriter

    def full(table, where, **kwargs):
        Path(where).write_bytes(b"PAR1 half")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pq, "write_table", full)
    with pytest.raises(OutputError, match=r"t\.parquet: cannot write it, no room \(No space"):
        write_catalog(empty_catalog(), tmp_path / "t.parquet")
    with pytest.raises(OutputError, match=r"d1\.fits: cannot write it, no room \(No space"):
        with CubeWriter(tmp_path / "d1.fits", n_images=2, image_shape=(88, 88),
                        cards={"D": 1, "BKG": 865.0}) as writer:  # fmt: skip
            writer.write(np.zeros((1, 88, 88)))
            monkeypatch.setattr(writer._hdu, "write", lambda chunk: full(None, writer._tmp))
            writer.write(np.zeros((1, 88, 88)))
    assert list(tmp_path.iterdir()) == []
