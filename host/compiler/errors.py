"""The compiler's error."""


class CompileError(ValueError):
    """A model the compiler cannot map onto the engine; the message names the op and the limit."""
