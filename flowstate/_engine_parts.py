"""What the Orchestrator's mixins (``_workers``, ``_interaction``, ``_concurrency``) use of the
Orchestrator itself, declared once for type checkers: at run time the class is empty."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable
    from datetime import datetime
    from uuid import UUID

    from flowstate.orchestration.policy import Policy
    from flowstate.results import OrchestrationResult
    from flowstate.runs import FlowRun
    from flowstate.states import State
    from flowstate.store.base import StoreBackend

__all__ = ["EngineParts"]


class EngineParts:
    """The base of the Orchestrator's mixins: the parts of the engine they call."""

    if TYPE_CHECKING:  # provided by Orchestrator
        _store: StoreBackend
        _sleep: Callable[[float], object]
        _clock_given: bool

        def transaction(self) -> Any: ...
        def _transaction(self) -> Any: ...
        def _read_transaction(self) -> Any: ...
        def _now(self) -> datetime: ...
        def _liveness_time(self, now: datetime | None) -> datetime: ...
        def _read_flow_run(self, run_id: UUID, now: datetime) -> FlowRun: ...
        def _orchestrate_flow(
            self,
            run_id: UUID,
            proposed: State,
            *,
            force: bool,
            now: datetime,
            run: FlowRun | None = None,
            policy: Policy | None = None,
        ) -> OrchestrationResult: ...
        def create_flow_run_input(
            self, id: UUID | str, key: str, value: str, *, sender: str | None = None
        ) -> None: ...
