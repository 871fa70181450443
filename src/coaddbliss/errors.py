"""The base class of the errors that bad input (a file, a config value) raises, and its kin."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator


class InputError(ValueError):
    """A file or config value the library cannot use; the message names it and the problem.

    Rule scripts log these as one line and exit non-zero (`scripting.rule_job`); anything else
    is a bug and keeps its traceback.
    """


class OutputError(InputError):
    """An output could not be written (disk full, quota, file-size limit); names the file.

    Not a bug either: the job says so in one line, its partial file removed, and a rerun with
    room to write succeeds.
    """


@contextlib.contextmanager
def fits_errors(
    error: type[InputError], path: str | os.PathLike, missing: Callable[[KeyError], str]
) -> Iterator[None]:
    """Reading FITS file `path`, raise `error` naming it: `missing(err)` for a missing key or
    extension, 'not a readable FITS file' for anything else astropy raises; `error` passes."""
    try:
        yield
    except error:
        raise
    except KeyError as err:
        raise error(f"{path}: {missing(err)}") from err
    except Exception as err:  # astropy raises many kinds for truncated or foreign files
        raise error(f"{path}: not a readable FITS file ({err})") from err
