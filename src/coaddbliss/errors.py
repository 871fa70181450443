"""The base class of the errors that bad input (a file, a config value) raises, and its kin."""

from __future__ import annotations


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
