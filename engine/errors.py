"""Well-named exceptions with stable codes.

Every request that crosses an actor boundary is answered with a result or an
`Error(code, message)`; these exceptions carry the same codes so code that
raises and code that replies speak one vocabulary.
"""

from __future__ import annotations


class PetriflowError(Exception):
    """Base of every petriflow error; `code` is stable and machine-readable."""

    code = "error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else self.code


class NotFound(PetriflowError):
    code = "not_found"


class Invalid(PetriflowError):
    code = "invalid"


class InvalidWorkflow(Invalid):
    """A workflow document that breaks a rule; `problems` names each offender."""

    code = "invalid_workflow"
    PREFIX = "invalid workflow: "

    def __init__(self, problems: list[str] | str) -> None:
        if isinstance(problems, str):
            problems = problems.removeprefix(self.PREFIX).split("; ")
        self.problems = list(problems)
        super().__init__(self.PREFIX + "; ".join(self.problems))


class IllegalTransition(PetriflowError):
    """A state change the entity's state machine does not allow."""

    code = "illegal_transition"


class TaskNotEnabled(PetriflowError):
    code = "task_not_enabled"


class TokensNotAvailable(PetriflowError):
    code = "tokens_not_available"


class TaskNotAvailable(PetriflowError):
    code = "task_not_available"


class AlreadyCompleted(PetriflowError):
    code = "already_completed"


class NoRoute(PetriflowError):
    """No out-arc of a completed step holds: the case ends with a failure of this kind."""

    code = "no_route"


class WorkflowDiscarded(PetriflowError):
    code = "workflow_discarded"


class StorageFailure(PetriflowError):
    """A write could not be committed (disk full, I/O error, a lock held too
    long); nothing of it was stored, what was committed before stands."""

    code = "storage_failure"


class StaleIncarnation(PetriflowError):
    """A write by an actor that a newer incarnation of its entity replaced.

    The stale actor must exit: its entity lives on in the newer actor."""

    code = "stale_incarnation"


class TriggerChanged(PetriflowError):
    """A webhook's auth changed between the HTTP server's check and the
    Engine's submit: the server checks the request again with the new one."""

    code = "trigger_changed"


class ExecutorNotFound(Invalid):
    code = "executor_not_found"


class Unauthorized(PetriflowError):
    """A webhook call whose credential is missing or wrong (`engine.webhook_auth`);
    its message never holds the secret nor what the caller presented."""

    code = "unauthorized"


def error_for(code: str, message: str) -> PetriflowError:
    """The exception for a stable code, as a client rebuilds it from `Error`."""
    pending: list[type[PetriflowError]] = [PetriflowError]
    while pending:
        cls = pending.pop()
        if cls.code == code:
            return cls(message)
        pending.extend(cls.__subclasses__())
    return PetriflowError(message, code=code)
