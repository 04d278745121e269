"""The built-in policies: Prefect's core and minimal policies for flow and task runs."""

from __future__ import annotations

from flowstate.orchestration.flow_rules import (
    bypass_cancelling_flow_runs_with_no_infra,
    enforce_cancelling_to_cancelled_transition,
    ensure_only_scheduled_flows_marked_late,
    handle_flow_terminal_state_transitions,
    handle_pausing_flows,
    handle_resuming_paused_flows,
    preserve_deployment_concurrency_lease_id,
    prevent_duplicate_transitions,
    prevent_pending_transitions,
    prevent_result_data_loss,
    retry_failed_flows,
)
from flowstate.orchestration.deployment_rules import (
    release_flow_concurrency_slots,
    secure_flow_concurrency_slots,
    validate_deployment_concurrency_at_running,
)
from flowstate.orchestration.policy import Policy
from flowstate.orchestration.scheduling_rules import copy_scheduled_time, wait_for_scheduled_time
from flowstate.orchestration.tag_rules import (
    release_task_concurrency_slots,
    secure_task_concurrency_slots,
)
from flowstate.orchestration.task_rules import (
    cache_insertion,
    cache_retrieval,
    handle_task_terminal_state_transitions,
    prevent_running_tasks_from_stopped_flows,
    rename_reruns,
    retry_failed_tasks,
    update_flow_run_tracker_on_tasks,
)

__all__ = ["CORE_FLOW", "CORE_TASK", "MARK_LATE", "MINIMAL_FLOW", "MINIMAL_TASK"]

CORE_FLOW = Policy(
    "core-flow",
    [
        preserve_deployment_concurrency_lease_id,
        prevent_duplicate_transitions,
        handle_flow_terminal_state_transitions,
        enforce_cancelling_to_cancelled_transition,
        bypass_cancelling_flow_runs_with_no_infra,
        prevent_pending_transitions,
        validate_deployment_concurrency_at_running,
        secure_flow_concurrency_slots,
        ensure_only_scheduled_flows_marked_late,
        handle_pausing_flows,
        handle_resuming_paused_flows,
        copy_scheduled_time,
        wait_for_scheduled_time,
        retry_failed_flows,
        release_flow_concurrency_slots,
    ],
    kind="flow",
)
"""Prefect's CoreFlowPolicy (a 3.4.11+ client's: leases are kept alive, so
RemoveDeploymentConcurrencyLeaseForOldClientVersions has nothing to do)."""

MINIMAL_FLOW = Policy(
    "minimal-flow",
    [
        preserve_deployment_concurrency_lease_id,
        prevent_result_data_loss,
        bypass_cancelling_flow_runs_with_no_infra,
        release_flow_concurrency_slots,
    ],
    kind="flow",
)
"""What ``force=True`` keeps for flow runs: data-loss protection, cancelling without infra, and
giving back a deployment slot when a run leaves PENDING/RUNNING/CANCELLING."""

CORE_TASK = Policy(
    "core-task",
    [
        cache_retrieval,
        handle_task_terminal_state_transitions,
        prevent_running_tasks_from_stopped_flows,
        secure_task_concurrency_slots,
        copy_scheduled_time,
        wait_for_scheduled_time,
        retry_failed_tasks,
        rename_reruns,
        update_flow_run_tracker_on_tasks,
        cache_insertion,
        release_task_concurrency_slots,
    ],
    kind="task",
)
"""Prefect's CoreTaskPolicy."""

MINIMAL_TASK = Policy("minimal-task", [release_task_concurrency_slots], kind="task")
"""What ``force=True`` keeps for task runs: bookkeeping, and giving back the tag slots of a run
that leaves RUNNING and CANCELLING."""

MARK_LATE = Policy("mark-late", [ensure_only_scheduled_flows_marked_late], kind="flow")
"""What marking runs late goes through (Prefect's MarkLateRunsPolicy, less deployment limits)."""
