"""Errors the command line reports as one line."""


class CommandError(Exception):
    """A user-facing failure: printed as one line, exit status 1 (or ``status``)."""

    def __init__(self, message: str, status: int = 1):
        super().__init__(message)
        self.status = status
