"""The Orchestrator's worker methods: claiming due runs, heartbeats, lost and late runs.

A mixin of :class:`flowstate.Orchestrator`, kept apart so that the engine's module holds only
the transition itself. Each method is one transaction of the orchestrator's store, and every
state change it makes goes through the orchestrator's policies like any other proposal.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import TYPE_CHECKING
from uuid import UUID

from flowstate import _validation as validate
from flowstate._engine_parts import EngineParts
from flowstate._seconds import span
from flowstate._time import UTC, as_utc
from flowstate.concurrency.tags import TASK_SLOT_LEASE_SECONDS
from flowstate.errors import InvalidState
from flowstate.orchestration.policies import MARK_LATE
from flowstate.results import OrchestrationResult, SetStateStatus
from flowstate.runs import FlowRun
from flowstate.states import State, StateDetails, StateType

if TYPE_CHECKING:
    from flowstate.concurrency.models import ConcurrencyLease
    from flowstate.store.limits import LimitStore

__all__ = ["WorkerMethods", "due_run_arguments"]

_EARLIEST = datetime.min.replace(tzinfo=UTC)


class WorkerMethods(EngineParts):
    """What a worker, a reaper and the late-runs service call (mixed into Orchestrator)."""

    if TYPE_CHECKING:  # provided by Orchestrator (its DeploymentMethods)
        def expire_leases(self, *, now: datetime | None = None) -> list[ConcurrencyLease]: ...
        @property
        def _limits(self) -> LimitStore: ...
        def _renew_deployment_slot(self, run: FlowRun, now: datetime) -> None: ...

    def _at(self, now: datetime | None) -> datetime:
        if now is None:
            return self._now()
        if not isinstance(now, datetime):
            raise InvalidState(f"now={now!r} is not a datetime")
        return as_utc(now)

    def _liveness_time(self, now: datetime | None) -> datetime:
        """The time heartbeats are stamped with and silence is measured at: ``now`` if given,
        else the injected ``clock=`` if there is one, else the database server's clock when it
        has one (PostgreSQL's ``now()``: hosts whose clocks disagree still agree on it), else
        this host's. Inside a transaction."""
        if now is None and not self._clock_given:
            server = self._store.server_time()
            if server is not None:
                return server
        return self._at(now)

    def claim_due_flow_runs(
        self, *, limit: int, now: datetime | None = None, worker: str | None = None
    ) -> list[FlowRun]:
        """Move up to ``limit`` due SCHEDULED runs (Late ones too) to PENDING, oldest first.

        One transaction: concurrent claimers, in threads or processes, never get the same run.
        Each claim goes through the flow policy; claimed runs get a first heartbeat (with
        ``worker``, if given). Returns the claimed runs.
        """
        due_run_arguments(limit, 1.0, worker)
        message = None if worker is None else f"Claimed by {worker}"
        with self.transaction():  # several decisions: undone together if one fails
            at = self._at(now)
            claimed: list[UUID] = []
            beat: datetime | None = None
            for run_id in self._store.due_flow_run_ids(at, limit):
                result = self._orchestrate_flow(
                    run_id, State(type=StateType.PENDING, message=message), force=False, now=at
                )
                if result.status is SetStateStatus.ACCEPT:
                    beat = beat or self._liveness_time(now)
                    self._store.record_heartbeat(run_id, worker=worker, at=beat)
                    claimed.append(run_id)
            return [self._read_flow_run(run_id, at) for run_id in claimed]

    def iter_due_flow_runs(
        self,
        *,
        limit: int = 1,
        poll_interval: float = 1.0,
        worker: str | None = None,
        stop: threading.Event | None = None,
    ) -> Iterator[FlowRun]:
        """Claim and yield due runs forever (or until ``stop`` is set), polling when idle. Each
        poll also releases expired concurrency leases (:meth:`expire_leases`).

        A minimal single-process worker::

            for run in orc.iter_due_flow_runs(poll_interval=5, worker="w1"):
                execute(run)   # then propose Running, Completed, ...
        """
        interval = due_run_arguments(limit, poll_interval, worker)
        return self._claim_forever(limit, interval, worker, stop or threading.Event())

    def _claim_forever(
        self, limit: int, interval: float, worker: str | None, stop: threading.Event
    ) -> Iterator[FlowRun]:
        while not stop.is_set():
            self.expire_leases()
            runs = self.claim_due_flow_runs(limit=limit, worker=worker)
            yield from runs
            if not runs:
                stop.wait(interval)

    def heartbeat(self, id: UUID | str, *, worker: str | None = None) -> None:
        """Record that a PENDING or RUNNING flow run is alive (see :meth:`mark_lost_runs`);
        the deployment slot it holds, if any, is renewed for the deployment's grace period.

        The tag slots its task runs hold are kept too: their leases last at least
        :data:`~flowstate.concurrency.tags.TASK_SLOT_LEASE_SECONDS` more from now. Stamped by
        the injected ``clock=`` if given, else by the database server's clock on PostgreSQL,
        else by this host's."""
        run_id = validate.run_id(id)
        validate.optional_text(worker, "worker")
        with self._transaction():
            now = self._liveness_time(None)
            run = self._read_flow_run(run_id, now)
            if run.state_type not in (StateType.PENDING, StateType.RUNNING):
                state = "no state" if run.state_type is None else run.state_type.value
                raise InvalidState(
                    f"flow run {run_id} is in {state}; only PENDING or RUNNING runs send heartbeats"
                )
            self._store.record_heartbeat(run_id, worker=worker, at=now)
            self._renew_deployment_slot(run, now)
            self._limits.renew_task_leases_of_flow_run(
                str(run_id), now + timedelta(seconds=TASK_SLOT_LEASE_SECONDS)
            )

    def set_heartbeat_timeout(self, id: UUID | str, timeout: float) -> None:
        """Give a flow run its own heartbeat timeout, which overrides ``mark_lost_runs``'s."""
        run_id = validate.run_id(id)
        seconds = span(timeout, "timeout", zero=False)
        with self._transaction():
            self._read_flow_run(run_id, self._now())
            self._store.record_heartbeat(run_id, timeout_seconds=seconds)

    def mark_lost_runs(
        self, *, timeout: float, now: datetime | None = None
    ) -> list[OrchestrationResult]:
        """Propose CRASHED for every PENDING/RUNNING flow run silent for longer than ``timeout``.

        Silence counts from the last heartbeat, or from the state's timestamp if the run never
        sent one; a run's own heartbeat timeout wins over ``timeout``. Each proposal goes
        through the flow policy (add ``flowstate.rules.retry_crashed_flows`` to retry crashed
        runs). Idempotent, and safe from several processes at once (one transaction).

        Silence is measured at ``now`` if given, else by the injected ``clock=``, else by the
        database server's clock on PostgreSQL (which also stamps heartbeats), else this host's.
        """
        default = span(timeout, "timeout", zero=False)
        with self.transaction():  # several decisions: undone together if one fails
            at = self._liveness_time(now)
            results = []
            for run_id, last_seen, own_timeout in self._store.active_flow_run_liveness():
                allowed = default if own_timeout is None else own_timeout
                silence = (at - last_seen).total_seconds()
                if silence <= allowed:
                    continue
                crashed = State(
                    type=StateType.CRASHED,
                    message=(
                        f"No heartbeat for {silence:.0f} s (more than the {allowed:g} s allowed); "
                        "the process running this flow run is presumed lost."
                    ),
                )
                results.append(self._orchestrate_flow(run_id, crashed, force=False, now=at))
            return results

    def mark_late_runs(
        self, *, threshold: float = 15.0, now: datetime | None = None
    ) -> list[OrchestrationResult]:
        """Mark ``Late`` the runs still ``Scheduled`` more than ``threshold`` s past their time.

        As Prefect's late-runs service: each gets ``Late(scheduled_time=<its scheduled time>)``
        through the mark-late policy.
        """
        seconds = span(threshold, "threshold")
        with self.transaction():  # several decisions: undone together if one fails
            at = self._at(now)
            results = []
            if at - _EARLIEST <= timedelta(seconds=seconds):
                return []  # (no time is that long before ``now``: no run can be late yet)
            for run_id in self._store.late_candidate_ids(at - timedelta(seconds=seconds)):
                run = self._read_flow_run(run_id, at)
                late = State(
                    type=StateType.SCHEDULED,
                    name="Late",
                    state_details=StateDetails(scheduled_time=run.next_scheduled_start_time),
                )
                result = self._orchestrate_flow(
                    run_id, late, force=False, now=at, run=run, policy=MARK_LATE
                )
                results.append(result)
            return results


def due_run_arguments(limit: object, poll_interval: object, worker: object) -> float:
    """Check the arguments of a claim and of a claiming loop; returns the poll interval."""
    validate.whole_number(limit, "limit", 1)
    validate.optional_text(worker, "worker")
    return span(poll_interval, "poll_interval")
