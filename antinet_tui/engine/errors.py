"""Errors a user can act on. Their text is shown as is: say what and what to do."""


class EngineError(Exception):
    """Base class: a clear message for the operator, never a traceback."""


class ModelNotFound(EngineError):
    pass


class ModelFormatError(EngineError):
    """Not a GGUF file, a truncated one, or an architecture/tensor type we cannot run."""


class InvalidRequest(EngineError):
    """Bad input for one request (empty prompt, prompt beyond the context, ...)."""


class UnknownMode(EngineError):
    def __init__(self, mode: str, valid: tuple[str, ...] | list[str]):
        super().__init__(f"unknown mode {mode!r}; valid modes: {', '.join(valid)}")
        self.mode = mode
        self.valid = tuple(valid)


class BackendUnavailable(EngineError):
    """The backend cannot run here (missing runtime, device busy, ...)."""


class UnknownBackend(EngineError):
    pass


class UnsupportedByBackend(ModelFormatError):
    """A valid model this backend cannot run as it is (another backend can)."""
