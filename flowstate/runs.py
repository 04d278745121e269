"""Flow runs and task runs as the API returns them (data only, no I/O)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from flowstate._time import UtcDateTime
from flowstate.states import State, StateType

__all__ = ["SAVED_FIELDS", "FlowRun", "FlowRunPolicy", "TaskRun", "TaskRunPolicy"]

SAVED_FIELDS: dict[Literal["flow", "task"], frozenset[str]] = {
    "flow": frozenset((
        "state_type", "state_name", "run_count", "start_time", "end_time", "total_run_time",
        "expected_start_time", "next_scheduled_start_time", "empirical_policy",
    )),
    "task": frozenset((
        "state_type", "state_name", "run_count", "flow_run_run_count", "start_time", "end_time",
        "total_run_time", "expected_start_time", "next_scheduled_start_time", "cache_key",
        "cache_expiration",
    )),
}
"""The fields of a run that a transition saves (what the UPDATE statements write): the ones a
rule may change with ``ctx.update_run``."""


class FlowRunPolicy(BaseModel):
    """A flow run's retry settings and pause bookkeeping (Prefect's ``empirical_policy``)."""

    model_config = ConfigDict(defer_build=True, validate_assignment=False)

    max_retries: int = 0
    retry_delay_seconds: float = 0
    retries: int | None = None
    retry_delay: int | None = None
    pause_keys: set[str] = Field(default_factory=set)
    resuming: bool = False
    retry_type: Literal["in_process", "reschedule"] | None = None

    @model_validator(mode="after")
    def _backfill_deprecated(self) -> FlowRunPolicy:
        if not self.retries and self.max_retries != 0:
            self.retries = self.max_retries
        if not self.retry_delay and self.retry_delay_seconds != 0:
            self.retry_delay = int(self.retry_delay_seconds)
        return self


_FLOW_POLICY_DEFAULTS: dict[str, Any] = {
    name: set() if name == "pause_keys" else field.default
    for name, field in FlowRunPolicy.model_fields.items()
}
"""A default FlowRunPolicy's values, read off the fields without building a validator (for
comparing; give each new policy a set of its own)."""


class TaskRunPolicy(BaseModel):
    """A task run's retry settings: ``retry_delay`` is seconds or a list, one per retry."""

    model_config = ConfigDict(defer_build=True)

    max_retries: int = 0
    retry_delay_seconds: float = 0
    retries: int | None = None
    retry_delay: float | list[float] | None = None
    retry_jitter_factor: float | None = None

    @field_validator("retry_delay")
    @classmethod
    def _at_most_50_delays(cls, value: Any) -> Any:
        if isinstance(value, list) and len(value) > 50:
            raise ValueError("Can not configure more than 50 retry delays per task.")
        return value

    @field_validator("retry_jitter_factor")
    @classmethod
    def _jitter_not_negative(cls, value: float | None) -> float | None:
        if value is not None and value < 0:
            raise ValueError("`retry_jitter_factor` must be >= 0.")
        return value

    @model_validator(mode="after")
    def _backfill_deprecated(self) -> TaskRunPolicy:
        if not self.retries and self.max_retries != 0:
            self.retries = self.max_retries
        if not self.retry_delay and self.retry_delay_seconds != 0:
            self.retry_delay = self.retry_delay_seconds
        return self


_RUN_CONFIG = ConfigDict(defer_build=True, ser_json_timedelta="float")


def _run_repr(run: FlowRun | TaskRun) -> str:
    """The run's id, name, state, counters, times and retry/pause settings (not its
    parameters, tags or bookkeeping times)."""
    from flowstate._repr import run_repr

    return run_repr(run)


class FlowRun(BaseModel):
    """A flow run: its current state, bookkeeping and retry/pause policy."""

    model_config = _RUN_CONFIG

    id: UUID
    name: str
    flow_name: str = "flow"
    parameters: dict[str, Any] = Field(default_factory=dict)
    tags: list[str] = Field(default_factory=list)
    state: State | None = None
    state_type: StateType | None = None
    state_name: str | None = None
    run_count: int = 0
    start_time: UtcDateTime | None = None
    end_time: UtcDateTime | None = None
    total_run_time: timedelta = timedelta(0)
    expected_start_time: UtcDateTime | None = None
    next_scheduled_start_time: UtcDateTime | None = None
    estimated_run_time: timedelta = timedelta(0)
    empirical_policy: FlowRunPolicy = Field(default_factory=FlowRunPolicy)
    deployment_id: UUID | None = None
    infrastructure_pid: str | None = None
    parent_task_run_id: UUID | None = None
    created: UtcDateTime | None = None
    updated: UtcDateTime | None = None

    __repr__ = _run_repr


class TaskRun(BaseModel):
    """A task run, inside a flow run or standalone (``flow_run_id`` None)."""

    model_config = _RUN_CONFIG

    id: UUID
    flow_run_id: UUID | None = None
    task_key: str = "task"
    dynamic_key: str = "0"
    name: str
    tags: list[str] = Field(default_factory=list)
    """The task run's tags: a tag with a concurrency limit (``create_concurrency_limit``) limits
    how many task runs carrying it are RUNNING at once."""
    state: State | None = None
    state_type: StateType | None = None
    state_name: str | None = None
    run_count: int = 0
    flow_run_run_count: int = 0
    start_time: UtcDateTime | None = None
    end_time: UtcDateTime | None = None
    total_run_time: timedelta = timedelta(0)
    expected_start_time: UtcDateTime | None = None
    next_scheduled_start_time: UtcDateTime | None = None
    empirical_policy: TaskRunPolicy = Field(default_factory=TaskRunPolicy)
    cache_key: str | None = None
    cache_expiration: UtcDateTime | None = None
    created: UtcDateTime | None = None
    updated: UtcDateTime | None = None

    __repr__ = _run_repr
