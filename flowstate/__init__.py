"""flowstate: Prefect's run orchestration, embedded — rules, states and history in SQLite.

>>> import flowstate
>>> from flowstate.states import Pending
>>> orc = flowstate.Orchestrator(":memory:")
>>> run = orc.create_flow_run(flow_name="etl")
>>> orc.set_flow_run_state(run.id, Pending()).status
<SetStateStatus.ACCEPT: 'ACCEPT'>
"""

from __future__ import annotations

from flowstate import states
from flowstate.errors import (
    DatabaseBusy,
    DatabaseError,
    FlowstateError,
    InvalidState,
    ObjectAlreadyExists,
    ObjectNotFound,
    RuleError,
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

__version__ = "0.1.0"

__all__ = [
    "AbortDetails",
    "AcceptDetails",
    "DatabaseBusy",
    "DatabaseError",
    "FlowRun",
    "FlowRunPolicy",
    "FlowstateError",
    "InvalidState",
    "ObjectAlreadyExists",
    "ObjectNotFound",
    "OrchestrationResult",
    "Orchestrator",
    "RejectDetails",
    "RuleError",
    "SetStateStatus",
    "State",
    "StateDetails",
    "StateType",
    "TaskRun",
    "TaskRunPolicy",
    "WaitDetails",
    "states",
]

for _name in __all__:
    _obj = globals()[_name]
    if isinstance(_obj, type):
        _obj.__module__ = "flowstate"
del _name, _obj
