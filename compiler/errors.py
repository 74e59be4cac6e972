"""The one exception type for everything a user can cause, and the helper that shortens
foreign (often multi-line, C++-originated) errors into its one line."""


class MccError(Exception):
    """A problem with the user's input or environment, stated in one line.

    The CLI prints ``error: <message>`` and exits non-zero; nothing deeper than
    this message should reach a user.
    """


class ReferenceUnavailable(MccError):
    """The reference runtime cannot run this model at all (e.g. ONNX Runtime lacks one of
    its ops): the compile skips verification and says why. Raised by the frontends,
    caught by the driver's verify step."""


def first_line(err: BaseException) -> str:
    """The most telling single line of a (possibly multi-line, C++-originated) error."""
    lines = [ln.strip() for ln in str(err).strip().splitlines() if ln.strip()]
    for line in reversed(lines):
        if not line.startswith(("File ", "at ", "^", "Traceback", "[bt]")) and "Error" in line:
            return line[:300]
    return (lines[-1] if lines else type(err).__name__)[:300]
