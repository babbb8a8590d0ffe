"""Errors the command line reports as one line."""


class CommandError(Exception):
    """A user-facing failure: printed as one line, exit status 1 (or ``status``)."""

    def __init__(self, message: str, status: int = 1):
        super().__init__(message)
        self.status = status


class ClusterError(CommandError):
    """``--cluster`` cannot be used (bad address, Ray missing, unreachable, no device of the kind): the message
    says why and what to do. Defined here, not in ``onda.host.cluster``, so the server catches it without
    importing that package (and Ray)."""
