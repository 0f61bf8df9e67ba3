"""The one exception type the CLI turns into a one-line message.

Anything a user can fix (a missing file, a bad option value, an absent system library) raises
``StemkitError`` with a message that names the problem and the fix. The CLI prints it on one line
and exits non-zero without a traceback; genuine bugs still raise ordinary exceptions.
"""


class StemkitError(Exception):
    """A problem with the user's input or environment, explained in one line."""


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type name when empty): enough for a one-line error."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class StemkitWarning(UserWarning):
    """Something the user should know that does not stop the job (e.g. clipped samples).

    The CLI prints each as one line, ``stemkit: warning: ...``, whatever the Python warning filters."""
