"""Orchestration results, shaped exactly as Prefect's ``set_state`` and ``resume`` answer."""

from __future__ import annotations

import enum
from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field

from flowstate.states import State

__all__ = [
    "AbortDetails",
    "AcceptDetails",
    "OrchestrationResult",
    "RejectDetails",
    "SetStateStatus",
    "WaitDetails",
]


class SetStateStatus(str, enum.Enum):
    """What the orchestrator answered a proposed state."""

    ACCEPT = "ACCEPT"
    REJECT = "REJECT"
    ABORT = "ABORT"
    WAIT = "WAIT"


class AcceptDetails(BaseModel):
    """The proposal (possibly changed by a rule) was written."""

    model_config = ConfigDict(frozen=True, defer_build=True)
    type: Literal["accept_details"] = "accept_details"


class RejectDetails(BaseModel):
    """The proposal was refused; the result's state is the kept or substituted state."""

    model_config = ConfigDict(frozen=True, defer_build=True)
    type: Literal["reject_details"] = "reject_details"
    reason: str | None = None


class AbortDetails(BaseModel):
    """The transition cannot happen; nothing was written."""

    model_config = ConfigDict(frozen=True, defer_build=True)
    type: Literal["abort_details"] = "abort_details"
    reason: str | None = None


class WaitDetails(BaseModel):
    """Propose again in ``delay_seconds``; nothing was written."""

    model_config = ConfigDict(frozen=True, defer_build=True)
    type: Literal["wait_details"] = "wait_details"
    delay_seconds: int
    reason: str | None = None


Details = Annotated[
    Union[AcceptDetails, RejectDetails, AbortDetails, WaitDetails], Field(discriminator="type")
]


class OrchestrationResult(BaseModel):
    """The answer to a proposed state: the state now shown, a status and its details.

    ``state`` is the newly written state (ACCEPT, or REJECT with a substitute), the unchanged
    current state (REJECT without substitute, WAIT, ABORT), or None when there is none to show.
    """

    model_config = ConfigDict(frozen=True, defer_build=True)

    state: State | None = None
    status: SetStateStatus
    details: Details

    @property
    def reason(self) -> str | None:
        """The reason given with a REJECT, WAIT or ABORT; None for ACCEPT."""
        return getattr(self.details, "reason", None)

    @property
    def accepted(self) -> bool:
        """True when the status is ACCEPT."""
        return self.status is SetStateStatus.ACCEPT
