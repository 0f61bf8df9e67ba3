"""The one exception type the CLI turns into a one-line message.

Anything a user can fix (a missing file, a bad option value, an absent system library) raises
``StemkitError`` with a message that names the problem and the fix. The CLI prints it on one line
and exits non-zero without a traceback; genuine bugs still raise ordinary exceptions.
"""


class StemkitError(Exception):
    """A problem with the user's input or environment, explained in one line."""
