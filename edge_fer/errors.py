"""Errors that reach the user as one line.

Library code raises these with a message that says what is wrong and what to do; only the CLI
turns them into output and an exit code.
"""


class EdgeFerError(Exception):
    """Base class: the message is shown to the user as it is."""

    exit_code = 1


class UsageError(EdgeFerError):
    """The user asked for something that cannot work (bad option, bad combination)."""

    exit_code = 2


class InputError(EdgeFerError):
    """A file the user gave is missing, unreadable or not what it should be."""

    exit_code = 3


class ModelError(EdgeFerError):
    """A model cannot be loaded, or does not fit the task (input, output, metadata)."""

    exit_code = 4


class BackendError(EdgeFerError):
    """No interpreter backend can be loaded."""

    exit_code = 5


class SourceError(EdgeFerError):
    """A camera, video file or stream cannot be opened or went away for good."""

    exit_code = 6

    def __init__(self, message: str, *, permanent: bool = False):
        super().__init__(message)
        self.permanent = permanent
        """Waiting will not help (a library not installed, a bad address): a live source does
        not retry it."""


class OutputError(EdgeFerError):
    """An output the user asked for (a log, a recording) could not be written, or not all of it
    (a full disk, a file-size limit, an I/O error)."""

    exit_code = 7


class ServerError(EdgeFerError):
    """The server `predict --server` sends images to cannot be reached, refused the token, or
    answered something other than a result."""

    exit_code = 8


def interruption(exc: BaseException) -> KeyboardInterrupt | None:
    """The Ctrl-C (or SIGTERM, raised as one) that `exc` was raised while unwinding, if any.

    Cleanup code that fails half-way (TensorFlow's tracing, for one) replaces the interrupt with
    an error of its own; the interrupt is still its `__context__`, and it is what happened.
    """
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, KeyboardInterrupt):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None
