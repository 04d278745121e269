"""The exceptions flowstate raises.

Every error the public API raises is a ``FlowstateError``; each one also subclasses the builtin
exception a Python user would reach for, so ``except KeyError`` or ``except ValueError`` keep
working::

    FlowstateError (Exception)
    ├── ObjectNotFound (KeyError)          unknown run id, run-input key, ...
    ├── ObjectAlreadyExists (ValueError)   a run id or run-input key that already exists
    ├── InvalidState (ValueError)          a state or argument that cannot be valid
    ├── DatabaseError (RuntimeError)       not a flowstate database, corrupt, read-only, newer schema
    │   └── DatabaseBusy                   the database stayed locked longer than busy_timeout
    ├── RuleError (RuntimeError)           a rule raised while deciding; nothing was written
    ├── RunNotResumed (RuntimeError)       a waited-for pause ended otherwise: cancelled, failed, ...
    ├── ConcurrencyLimitReached (RuntimeError)  no free slot now; ``retry_after`` says when to ask again
    └── WaitTimeout (TimeoutError)         a wait for a resume or for input ran out of time

Orchestration outcomes (REJECT, WAIT, ABORT) are results, never exceptions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from flowstate.states import State

__all__ = [
    "ConcurrencyLimitReached",
    "DatabaseBusy",
    "DatabaseError",
    "FlowstateError",
    "InvalidState",
    "ObjectAlreadyExists",
    "ObjectNotFound",
    "RuleError",
    "RunNotResumed",
    "WaitTimeout",
]


class FlowstateError(Exception):
    """Base class of every error flowstate raises on purpose."""


class ObjectNotFound(FlowstateError, KeyError):
    """An id or key that names nothing in the database."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class ObjectAlreadyExists(FlowstateError, ValueError):
    """An id or key that is already taken; the existing object is left unchanged."""


class InvalidState(FlowstateError, ValueError):
    """A state or argument that cannot be valid; raised before anything is written."""


class DatabaseError(FlowstateError, RuntimeError):
    """The database cannot be used: the message says why and what to do."""


class DatabaseBusy(DatabaseError):
    """Another connection held the database lock for longer than the busy timeout."""


class RuleError(FlowstateError, RuntimeError):
    """A rule raised or misbehaved while deciding; the whole transition was rolled back."""


class RunNotResumed(FlowstateError, RuntimeError):
    """The pause a caller waits on ended without a resume: the run was cancelled, failed or
    crashed instead. ``state`` is the state it left the pause for."""

    def __init__(self, message: str, state: State | None = None) -> None:
        super().__init__(message)
        self.state = state


class ConcurrencyLimitReached(FlowstateError, RuntimeError):
    """A concurrency or rate limit has no free slot now (Prefect's HTTP 423); nothing was
    taken. ``retry_after`` is an estimate, in seconds, of when asking again may succeed, and
    ``limits`` the names of the limits that are full."""

    def __init__(self, message: str, retry_after: float, limits: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.limits = limits


class WaitTimeout(FlowstateError, TimeoutError):
    """A wait ran out of time: its own timeout passed, or the pause it waits on expired."""
