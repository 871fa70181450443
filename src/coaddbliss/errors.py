"""The one base class of the errors that bad input (a file, a config value) raises."""

from __future__ import annotations


class InputError(ValueError):
    """A file or config value the library cannot use; the message names it and the problem.

    Rule scripts log these as one line and exit non-zero (`scripting.rule_job`); anything else
    is a bug and keeps its traceback.
    """
