"""The one exception type for everything a user can cause."""


class MccError(Exception):
    """A problem with the user's input or environment, stated in one line.

    The CLI prints ``error: <message>`` and exits non-zero; nothing deeper than
    this message should reach a user.
    """
