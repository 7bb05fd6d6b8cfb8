"""The errors a user causes: bad params, bad data, missing or foreign files.

Each message names the file or value, what was expected and the fix. Stages and the CLI print
them alone (no traceback) and exit non-zero; any other exception is a bug and keeps its
traceback. Both subclass the builtins callers already catch (ValueError, FileNotFoundError).
"""


class InputError(ValueError):
    """A value, file or dataset the user gave breaks a rule; the message says which and the fix."""


class MissingInput(InputError, FileNotFoundError):
    """A file or folder the user must provide (or an earlier stage must write) is not there."""


class DataError(InputError):
    """The dataset breaks the data contract; the message names the file and the fix."""


MAX_LISTED = 10  # bad files named in one error message


def brief(value: object) -> str:
    """repr() of a value a user or a file gave, bounded: a few levels, items and characters
    (reprlib), so a message about a deeply nested or self-referencing value costs microseconds."""
    import reprlib

    r = reprlib.Repr()  # Python 3.11: limits are attributes
    r.maxlevel, r.maxlist, r.maxtuple, r.maxdict, r.maxset = 3, 8, 8, 8, 8
    r.maxstring, r.maxother, r.maxlong = 80, 80, 40
    shown = r.repr(value)
    return shown if len(shown) <= 160 else shown[:157] + "..."
