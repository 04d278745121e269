"""flowstate: Prefect's run orchestration, embedded — rules, states and history in SQLite.

>>> import flowstate
>>> from flowstate.states import Pending
>>> orc = flowstate.Orchestrator(":memory:")
>>> run = orc.create_flow_run(flow_name="etl")
>>> orc.set_flow_run_state(run.id, Pending()).status
<SetStateStatus.ACCEPT: 'ACCEPT'>
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from flowstate import states
from flowstate.errors import (
    ConcurrencyLimitReached,
    DatabaseBusy,
    DatabaseError,
    FlowstateError,
    InvalidState,
    ObjectAlreadyExists,
    ObjectNotFound,
    RuleError,
    RunNotResumed,
    WaitTimeout,
)
from flowstate.orchestrator import Orchestrator
from flowstate.results import (
    AbortDetails,
    AcceptDetails,
    OrchestrationResult,
    RejectDetails,
    SetStateStatus,
    WaitDetails,
)
from flowstate.runs import FlowRun, FlowRunPolicy, TaskRun, TaskRunPolicy
from flowstate.states import State, StateDetails, StateType

if TYPE_CHECKING:
    from flowstate.aio import AsyncOrchestrator
    from flowstate.concurrency import (
        ConcurrencyLease,
        ConcurrencyLeaseHolder,
        ConcurrencyLimit,
        ConcurrencyOptions,
        Deployment,
        GlobalConcurrencyLimit,
    )
    from flowstate.run_input import RunInput, RunInputMetadata

__version__ = "0.1.0"

__all__ = [
    "AbortDetails",
    "AcceptDetails",
    "AsyncOrchestrator",
    "ConcurrencyLease",
    "ConcurrencyLeaseHolder",
    "ConcurrencyLimit",
    "ConcurrencyLimitReached",
    "ConcurrencyOptions",
    "DatabaseBusy",
    "DatabaseError",
    "Deployment",
    "FlowRun",
    "FlowRunPolicy",
    "FlowstateError",
    "GlobalConcurrencyLimit",
    "InvalidState",
    "ObjectAlreadyExists",
    "ObjectNotFound",
    "OrchestrationResult",
    "Orchestrator",
    "RejectDetails",
    "RuleError",
    "RunInput",
    "RunInputMetadata",
    "RunNotResumed",
    "SetStateStatus",
    "State",
    "StateDetails",
    "StateType",
    "TaskRun",
    "TaskRunPolicy",
    "WaitDetails",
    "WaitTimeout",
    "states",
]

_LAZY = {
    "AsyncOrchestrator": "flowstate.aio",
    "ConcurrencyLease": "flowstate.concurrency",
    "ConcurrencyLeaseHolder": "flowstate.concurrency",
    "ConcurrencyLimit": "flowstate.concurrency",
    "ConcurrencyOptions": "flowstate.concurrency",
    "Deployment": "flowstate.concurrency",
    "GlobalConcurrencyLimit": "flowstate.concurrency",
    "RunInput": "flowstate.run_input",
    "RunInputMetadata": "flowstate.run_input",
}
"""Names loaded on first use: defining pydantic models at import would validate (and load
pydantic's plugin machinery), which ``import flowstate`` never does; and asyncio costs import
time."""

for _name in __all__:
    _obj = globals().get(_name)
    if isinstance(_obj, type):
        _obj.__module__ = "flowstate"
del _name, _obj


def __getattr__(name: str) -> object:
    home = _LAZY.get(name)
    if home is None:
        raise AttributeError(f"module 'flowstate' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(home), name)
    if home == "flowstate.aio":  # (the run-input models keep their module: pydantic reads it)
        value.__module__ = "flowstate"
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
