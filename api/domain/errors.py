"""Domain exceptions. The HTTP layer maps each to a body of the contract."""


class DomainError(Exception):
    """Base of every error the domain raises on purpose."""


class InvalidToken(DomainError):
    """The identity service says the token is not valid."""


class IdentityUnavailable(DomainError):
    """The identity service could not be asked (down, 5xx, timeout, or too busy).

    ``retry_after``: whole seconds after which asking again may succeed, when known.
    """

    def __init__(self, message: str = "identity service unavailable",
                 retry_after: int | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class InstanceNotFound(DomainError):
    """No instance with that id is owned by the caller."""


class ActionNotFound(DomainError):
    """No action with that id exists on that instance."""


class InvalidAction(DomainError):
    """The action parameter is missing or not start/stop."""


class InvalidParameter(DomainError):
    """A query parameter has a value the contract does not allow."""


class ActionConflict(DomainError):
    """The instance's status does not allow the action (the contract's 409)."""

    def __init__(self, detail: str):
        super().__init__(detail)
        self.detail = detail


class ComputeError(DomainError):
    """The compute service refused or failed a request."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


class ComputeUnavailable(ComputeError):
    """The compute service could not answer (no answer at all, or a 5xx): worth asking
    again later, unlike a refusal."""


class ComputeTimeout(ComputeError):
    """A server did not reach its target status in time."""


class PlaybookFailed(DomainError):
    """A playbook run ended without success: a task failed, a host was unreachable, or
    the run outlasted its timeout. The message names the host and task where known."""


class ActionCancelled(DomainError):
    """The action was cancelled (by a caller, a lost lease or a worker shutting down)."""


class HostKeyError(DomainError):
    """A host's SSH host key is not the one pinned for its server (or it offered none).
    The message names the host, its server and how to accept a legitimately new key."""
