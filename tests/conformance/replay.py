"""Replay Prefect conformance vectors through flowstate's public API and compare the answers.

The vectors (``tests/conformance/vectors/*.jsonl``, provenance and format in that folder's
``README.md``) were recorded from a real Prefect 3.9.1 server. For each vector this module builds
the setup runs on a fresh in-memory :class:`flowstate.Orchestrator`, performs every step,
normalises the outcome the way the README describes (run ids -> ``<run:NAME>``, absolute
times -> ``*_in`` seconds relative to the moment the step was issued, ...) and compares it with
the step's ``expect`` entry.

The result of :func:`replay_vector` is a list of human-readable mismatch strings, each naming the
step index, the op, the path of the differing field, the expected and the actual value. An empty
list means the vector passes.

Only the public API is used: ``import flowstate`` and the names listed in ``docs/api.md``.
"""

from __future__ import annotations

import json
import os
import re
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

from tests.conformance.limits import LimitSteps, compare_op

__all__ = [
    "ENV_VAR",
    "MIN_VECTORS",
    "VECTOR_DIR",
    "find_vector_files",
    "override_location",
    "load_vectors",
    "replay_vector",
]

Database = str | Callable[[], Any]
"""What a replay runs on: ``Orchestrator(database)``, or the orchestrator a function makes."""

# --------------------------------------------------------------------------------------------
# Locating and loading the vectors
# --------------------------------------------------------------------------------------------

ENV_VAR = "FLOWSTATE_CONFORMANCE_DIR"
"""Environment variable naming a further folder (or single ``*.jsonl`` file) of vectors to replay
in addition to the repository's own."""

MIN_VECTORS = 306
"""The repository's recorded file holds this many vectors; fewer means they were not found."""

REPO_ROOT = Path(__file__).resolve().parents[2]
"""``tests/conformance/replay.py`` -> ``tests/conformance`` -> ``tests`` -> the repository."""

VECTOR_DIR = REPO_ROOT / "tests" / "conformance" / "vectors"
"""The vectors shipped with the repository (provenance and format in its ``README.md``)."""


def override_location() -> Path | None:
    """The folder or file named by ``$FLOWSTATE_CONFORMANCE_DIR``, or None when it is unset."""
    override = os.environ.get(ENV_VAR)
    return Path(override).expanduser() if override else None


def _jsonl_files(location: Path) -> list[Path]:
    """``location`` itself if it is a file, else its ``*.jsonl`` files sorted by name (not its
    subfolders: those hold vectors of other formats)."""
    if location.is_file():
        return [location]
    if location.is_dir():
        return sorted(location.glob("*.jsonl"))
    return []


def find_vector_files() -> list[Path]:
    """The repository's ``*.jsonl`` vector files, then those of ``$FLOWSTATE_CONFORMANCE_DIR``
    whose names the repository does not already ship (a same-named file is replayed once, from
    the repository)."""
    files = _jsonl_files(VECTOR_DIR)
    location = override_location()
    if location is not None:
        shipped = {path.name for path in files}
        files += [path for path in _jsonl_files(location) if path.name not in shipped]
    return files


def load_vectors(files: Iterable[Path] | None = None) -> list[dict[str, Any]]:
    """Parse every vector (one JSON object per non-blank line) of ``files``, in file order."""
    vectors: list[dict[str, Any]] = []
    for path in find_vector_files() if files is None else files:
        with path.open(encoding="utf-8") as handle:
            for line_number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    vectors.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise ValueError(f"{path}:{line_number}: not valid JSON: {exc}") from exc
    return vectors


# --------------------------------------------------------------------------------------------
# Small value helpers
# --------------------------------------------------------------------------------------------

TIME_FIELDS = {
    "scheduled_time_in": "scheduled_time",
    "pause_timeout_in": "pause_timeout",
    "cache_expiration_in": "cache_expiration",
}
"""Relative-time keys of the vector format -> the absolute ``StateDetails`` field."""

REFERENCE_FIELDS = ("flow_run_id", "task_run_id", "child_flow_run_id")
"""``StateDetails`` fields holding run ids, normalised to ``<run:NAME>``."""

LITERAL_DETAIL_FIELDS = (
    "cache_key",
    "refresh_cache",
    "pause_reschedule",
    "pause_key",
    "run_input_keyset",
    "retriable",
    "transition_id",
    "deferred",
    "untrackable_result",
)
"""``StateDetails`` fields compared as stored (``transition_id`` as its string)."""

UUID_PATTERN = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
_UUID_RE = re.compile(UUID_PATTERN)
_RUN_PLACEHOLDER_RE = re.compile(r"<run:([A-Za-z0-9_\-]+)>")
_MISSING = object()


def enum_value(value: Any) -> Any:
    """The ``.value`` of an enum member, anything else unchanged."""
    return getattr(value, "value", value)


def as_aware_utc(value: datetime) -> datetime:
    """``value`` as an aware datetime; a naive one is taken to be UTC."""
    return value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)


def seconds_from(t0: datetime, value: datetime | None) -> int | None:
    """``value - t0`` rounded to whole seconds, or None when ``value`` is None."""
    if value is None:
        return None
    return round((as_aware_utc(value) - t0).total_seconds())


def is_uuid_text(value: Any) -> bool:
    """Whether ``value`` is a string spelling a UUID."""
    return isinstance(value, str) and _UUID_RE.fullmatch(value) is not None


def as_json(value: Any) -> Any:
    """``value`` in JSON form (pydantic models dumped, UUIDs and datetimes as strings)."""
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def same_json(expected: Any, actual: Any) -> bool:
    """Exact comparison as JSON text: ``true`` differs from ``1``, key order does not matter."""
    try:
        return json.dumps(expected, sort_keys=True) == json.dumps(actual, sort_keys=True)
    except TypeError:
        return expected == actual


def short(value: Any, limit: int = 160) -> str:
    """A readable, length-limited rendering of ``value`` for mismatch messages."""
    if value is _MISSING:
        return "<missing>"
    try:
        text = json.dumps(value, sort_keys=True, default=str)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}...({len(text)} chars)"


def policy_field(policy: Any, name: str, default: Any = None) -> Any:
    """A field of a run's ``empirical_policy`` (a pydantic model, or a dict)."""
    if isinstance(policy, dict):
        return policy.get(name, default)
    return getattr(policy, name, default)


# --------------------------------------------------------------------------------------------
# Comparison
# --------------------------------------------------------------------------------------------


@dataclass
class Comparison:
    """Collects the mismatches of one step (paths are relative to the step's ``expect``)."""

    prefix: str
    tolerance: float
    run_ids: dict[str, UUID]
    mismatches: list[str] = field(default_factory=list)
    missing: Any = _MISSING
    """What stands for an absent field."""

    def report(self, path: str, expected: Any, actual: Any) -> None:
        """Record that ``path`` differs."""
        self.mismatches.append(
            f"{self.prefix} {path}: expected {short(expected)}, actual {short(actual)}"
        )

    def exact(self, path: str, expected: Any, actual: Any) -> None:
        """Exact comparison (as JSON)."""
        if not same_json(expected, actual):
            self.report(path, expected, actual)

    def approx(self, path: str, expected: Any, actual: Any) -> None:
        """Null-ness exactly, numbers within the oracle's tolerance."""
        if expected is None or actual is None or actual is _MISSING:
            if not (expected is None and actual is None):
                self.report(path, expected, actual)
            return
        if not isinstance(actual, (int, float)) or abs(expected - actual) > self.tolerance:
            self.report(f"{path} (tolerance {self.tolerance:g}s)", expected, actual)

    def text(self, path: str, expected: Any, actual: Any) -> None:
        """A reason or message: ``<run:NAME>`` stands for that run's id, ``<uuid>`` for any id."""
        if isinstance(expected, str) and isinstance(actual, str):
            if text_matches(expected, actual, self.run_ids):
                return
            self.report(path, expected, actual)
            return
        self.exact(path, expected, actual)


def substitute_run_ids(text: str, run_ids: dict[str, UUID]) -> str:
    """Replace every ``<run:NAME>`` of a known run with that run's real id."""

    def replace(match: re.Match[str]) -> str:
        run_id = run_ids.get(match.group(1))
        return str(run_id) if run_id is not None else match.group(0)

    return _RUN_PLACEHOLDER_RE.sub(replace, text)


def text_matches(expected: str, actual: str, run_ids: dict[str, UUID]) -> bool:
    """Whether ``actual`` equals ``expected`` once its placeholders are filled in."""
    expected = substitute_run_ids(expected, run_ids)
    if "<uuid>" not in expected:
        return expected == actual
    pattern = UUID_PATTERN.join(re.escape(part) for part in expected.split("<uuid>"))
    return re.fullmatch(pattern, actual) is not None


def compare_mapping(
    check: Comparison,
    path: str,
    expected: Any,
    actual: Any,
    compare_field: Callable[[str, Any, Any], None],
) -> None:
    """Compare every key of ``expected`` (a null/non-null difference is reported once).

    Keys the harness normalises but the vector does not record are not compared.
    """
    if not isinstance(expected, dict) or not isinstance(actual, dict):
        check.exact(path, expected, actual)
        return
    for key in sorted(expected):
        compare_field(f"{path}.{key}", expected[key], actual.get(key, _MISSING))


def compare_details(
    check: Comparison,
    expected: Any,
    actual: Any,
    delay_approx: bool,
    delay_range: list[int] | None = None,
) -> None:
    """``details``: type exactly, reason as text, WAIT ``delay_seconds`` approximately (or,
    given ``delay_range`` ``[lo, hi]``, within it, both ends included)."""
    if not isinstance(expected, dict) or not isinstance(actual, dict):
        check.exact("details", expected, actual)
        return
    for key in sorted(set(expected) | set(actual)):
        want, got = expected.get(key, _MISSING), actual.get(key, _MISSING)
        path = f"details.{key}"
        if key == "reason":
            check.text(path, want, got)
        elif key == "delay_seconds" and delay_range is not None:
            low, high = delay_range
            if not isinstance(got, int | float) or not low <= got <= high:
                check.report(f"{path} (range [{low}, {high}])", want, got)
        elif key == "delay_seconds" and delay_approx:
            check.approx(path, want, got)
        else:
            check.exact(path, want, got)


def compare_state_details(check: Comparison, expected: Any, actual: Any) -> None:
    """``state.state_details``: time fields approximately, everything else exactly."""

    def compare_field(path: str, want: Any, got: Any) -> None:
        if path.rsplit(".", 1)[-1] in TIME_FIELDS:
            check.approx(path, want, got)
        else:
            check.exact(path, want, got)

    compare_mapping(check, "state.state_details", expected, actual, compare_field)


def compare_state(check: Comparison, expected: Any, actual: Any) -> None:
    """``state``: null-ness, then type, name, message, data and the normalised details."""
    if expected is None or actual is None:
        if not (expected is None and actual is None):
            check.report("state", expected, actual)
        return
    for key in sorted(expected):
        want, got = expected[key], actual.get(key, _MISSING)
        if key == "state_details":
            compare_state_details(check, want, got)
        elif key == "message":
            check.text("state.message", want, got)
        else:
            check.exact(f"state.{key}", want, got)


def compare_run_after(check: Comparison, expected: Any, actual: Any) -> None:
    """``run_after``: every field exactly (``pause_keys`` already sorted and mapped)."""
    compare_mapping(check, "run_after", expected, actual, check.exact)


ORCHESTRATION_KEYS = {
    "status",
    "details",
    "http_status",
    "delay_seconds_approx",
    "state",
    "state_is_previous",
    "run_after",
    "limits_after",
    "delay_seconds_range",
}
"""Keys of a set_state/resume ``expect`` entry the replayer understands."""


def compare_orchestration(check: Comparison, expected: dict[str, Any], actual: dict[str, Any]) -> None:
    """Compare a set_state/resume outcome (``http_status`` is informational, not compared)."""
    for key in sorted(set(expected) - ORCHESTRATION_KEYS):
        check.report(key, expected[key], "<field not understood by the replayer>")
    check.exact("status", expected.get("status"), actual["status"])
    compare_details(
        check,
        expected.get("details"),
        actual["details"],
        delay_approx=bool(expected.get("delay_seconds_approx")),
        delay_range=expected.get("delay_seconds_range"),
    )
    compare_state(check, expected.get("state"), actual["state"])
    check.exact("state_is_previous", expected.get("state_is_previous"), actual["state_is_previous"])
    compare_run_after(check, expected.get("run_after"), actual["run_after"])
    if "limits_after" in expected:
        check.exact("limits_after", expected["limits_after"], actual.get("limits_after", _MISSING))


# --------------------------------------------------------------------------------------------
# Building proposed states
# --------------------------------------------------------------------------------------------


def build_state_details(details: dict[str, Any] | None, t0: datetime) -> dict[str, Any]:
    """A step's ``state_details``: ``*_in`` seconds become ``t0 + seconds``, the rest literal."""
    built: dict[str, Any] = {}
    for key, value in (details or {}).items():
        if key in TIME_FIELDS:
            built[TIME_FIELDS[key]] = None if value is None else t0 + timedelta(seconds=value)
        else:
            built[key] = value
    return built


def build_state(spec: dict[str, Any], t0: datetime) -> Any:
    """The ``flowstate.State`` a step proposes (absent name -> None, i.e. the default name)."""
    import flowstate

    return flowstate.State.model_validate(
        {
            "type": spec["type"],
            "name": spec.get("name"),
            "message": spec.get("message"),
            "data": spec.get("data"),
            "state_details": build_state_details(spec.get("state_details"), t0),
        }
    )


# --------------------------------------------------------------------------------------------
# Replaying one vector
# --------------------------------------------------------------------------------------------

SUBFLOW_PARENT_FLOW = "subflow_parent_flow"
SUBFLOW_PARENT_TASK = "subflow_parent_task"
"""Names of the runs created for ``is_subflow`` (the vectors reference the task run by name)."""


@dataclass
class Run:
    """A run created in setup: its kind (``flow`` / ``task``) and id."""

    kind: str
    id: UUID


class VectorReplay(LimitSteps):
    """Replays one vector on a fresh orchestrator (in memory unless a database is given)."""

    def __init__(self, vector: dict[str, Any], database: Database = ":memory:") -> None:
        import flowstate

        self.flowstate = flowstate
        self.vector = vector
        self.kind: str = vector["run"]
        self.tolerance: float = float(vector.get("oracle", {}).get("approx_tolerance_seconds", 2))
        self.runs: dict[str, Run] = {}
        self.init_limits()
        self.orc = database() if callable(database) else flowstate.Orchestrator(database)

    # -- setup --------------------------------------------------------------------------------

    def create_flow_run(self, name: str, options: dict[str, Any]) -> UUID:
        """Create a flow run with no state from the setup ``options`` and register it."""
        parent_task_run_id = self.create_subflow_parent() if options.get("is_subflow") else None
        run = self.orc.create_flow_run(
            empirical_policy=options.get("empirical_policy"),
            deployment_id=self.run_deployment(name, options),
            infrastructure_pid=options.get("infrastructure_pid"),
            parent_task_run_id=parent_task_run_id,
        )
        self.runs[name] = Run("flow", run.id)
        return run.id

    def run_deployment(self, name: str, options: dict[str, Any]) -> UUID | None:
        """The deployment of a setup flow run: ``deployment`` names one made in
        ``setup.before``; ``has_deployment`` (main file) asks for one without a limit, created
        with ``create_deployment`` when flowstate has it, else a bare id."""
        if options.get("deployment") is not None:
            return self.deployment_id_for(options["deployment"])
        if not options.get("has_deployment"):
            return None
        if hasattr(self.orc, "create_deployment"):
            return self.orc.create_deployment(f"deployment-of-{name}").id  # type: ignore[no-any-return]
        return uuid4()

    def create_subflow_parent(self) -> UUID:
        """A RUNNING flow run with a task run inside it; returns the task run's id."""
        flow_id = self.create_flow_run(SUBFLOW_PARENT_FLOW, {})
        self.force_state(flow_id, "flow", {"type": "RUNNING"})
        task = self.orc.create_task_run(flow_run_id=flow_id, task_key="subflow-parent-task")
        self.runs[SUBFLOW_PARENT_TASK] = Run("task", task.id)
        return task.id

    def create_task_run(self, name: str, options: dict[str, Any], flow_run_id: UUID | None) -> UUID:
        """Create a task run with no state (distinct dynamic key per run) and register it.
        Tags are passed only when there are some (``tags: []`` is the default)."""
        tags = {"tags": options["tags"]} if options.get("tags") else {}
        run = self.orc.create_task_run(
            flow_run_id=flow_run_id,
            dynamic_key=str(sum(run.kind == "task" for run in self.runs.values())),
            empirical_policy=options.get("empirical_policy"),
            **tags,
        )
        self.runs[name] = Run("task", run.id)
        return run.id

    def create_parent_flow(self, spec: dict[str, Any] | None) -> UUID | None:
        """A task vector's parent flow run (None for a standalone task), forced into its state."""
        if spec is None:
            return None
        flow_id = self.create_flow_run("parent_flow", spec)
        if spec.get("state") is not None:
            self.force_state(flow_id, "flow", spec["state"])
        return flow_id

    def force_state(self, run_id: UUID, kind: str, spec: dict[str, Any]) -> None:
        """Put a run into a state with force (setup only; the result is not compared)."""
        state = build_state(spec, datetime.now(timezone.utc))
        if kind == "flow":
            self.orc.set_flow_run_state(run_id, state, force=True)
        else:
            self.orc.set_task_run_state(run_id, state, force=True)

    def setup(self) -> None:
        """Perform ``setup.before`` (limits and deployments, not compared), then create every
        run of ``vector.setup`` (all with no state, except forced parents)."""
        setup = self.vector.get("setup", {})
        handlers = self.limit_handlers()
        for step in setup.get("before") or []:
            if step.get("op") not in handlers:
                raise ValueError(f"setup.before: unknown op {step.get('op')!r}")
            outcome = handlers[step["op"]](step, None)
            if outcome.get("http_status", 200) >= 300:
                raise RuntimeError(f"setup.before: {step} answered {outcome}")
        others: dict[str, dict[str, Any]] = setup.get("other_runs") or {}
        if self.kind == "flow":
            self.create_flow_run("main", setup.get("run") or {})
            for name, options in others.items():
                self.create_flow_run(name, options or {})
            return
        flow_id = self.create_parent_flow(setup.get("parent_flow"))
        self.create_task_run("main", setup.get("run") or {}, flow_id)
        for name, options in others.items():
            self.create_task_run(name, options or {}, flow_id)

    # -- reading runs -------------------------------------------------------------------------

    @property
    def run_ids(self) -> dict[str, UUID]:
        """Run name -> id, for placeholders."""
        return {name: run.id for name, run in self.runs.items()}

    def read_run(self, run: Run) -> Any:
        """The run as the API reads it."""
        if run.kind == "flow":
            return self.orc.read_flow_run(run.id)
        return self.orc.read_task_run(run.id)

    def read_history(self, run: Run) -> list[Any]:
        """The run's state history."""
        if run.kind == "flow":
            return self.orc.read_flow_run_states(run.id)
        return self.orc.read_task_run_states(run.id)

    def current_state_id(self, run: Run) -> UUID | None:
        """The id of the run's current state, or None when it has none."""
        state = self.read_run(run).state
        return None if state is None else state.id

    # -- normalisation ------------------------------------------------------------------------

    def reference(self, value: Any) -> str | None:
        """A run id as ``<run:NAME>``; an id of no setup run as ``<uuid>``."""
        if value is None:
            return None
        for name, run in self.runs.items():
            if str(run.id) == str(value):
                return f"<run:{name}>"
        return "<uuid>"

    def normalise_state_details(self, details: Any, t0: datetime) -> dict[str, Any]:
        """The README's normalised ``state_details`` of a returned state."""
        normalised: dict[str, Any] = {}
        for key in REFERENCE_FIELDS:
            normalised[key] = self.reference(getattr(details, key, None))
        for relative, absolute in TIME_FIELDS.items():
            normalised[relative] = seconds_from(t0, getattr(details, absolute, None))
        for key in LITERAL_DETAIL_FIELDS:
            normalised[key] = as_json(getattr(details, key, None))
        normalised["deployment_concurrency_lease_id"] = self.lease_label(
            getattr(details, "deployment_concurrency_lease_id", None)
        )
        return normalised

    def normalise_state(self, state: Any, t0: datetime) -> dict[str, Any] | None:
        """The README's normalised ``state`` (type, name, message, data, state_details)."""
        if state is None:
            return None
        return {
            "type": enum_value(state.type),
            "name": state.name,
            "message": state.message,
            "data": state.model_dump(mode="json")["data"],
            "state_details": self.normalise_state_details(state.state_details, t0),
        }

    def normalise_flow_run(self, run: Run) -> dict[str, Any]:
        """``run_after`` of a flow run."""
        flow_run = self.orc.read_flow_run(run.id)
        policy = flow_run.empirical_policy
        pause_keys = policy_field(policy, "pause_keys") or []
        return {
            "state_type": enum_value(flow_run.state_type),
            "state_name": flow_run.state_name,
            "run_count": flow_run.run_count,
            "history_len": len(self.read_history(run)),
            "pause_keys": sorted("<uuid>" if is_uuid_text(key) else key for key in pause_keys),
            "resuming": policy_field(policy, "resuming"),
            "retry_type": enum_value(policy_field(policy, "retry_type")),
            "start_time_set": flow_run.start_time is not None,
            "end_time_set": flow_run.end_time is not None,
        }

    def normalise_task_run(self, run: Run) -> dict[str, Any]:
        """``run_after`` of a task run."""
        task_run = self.orc.read_task_run(run.id)
        return {
            "state_type": enum_value(task_run.state_type),
            "state_name": task_run.state_name,
            "run_count": task_run.run_count,
            "history_len": len(self.read_history(run)),
            "start_time_set": task_run.start_time is not None,
            "end_time_set": task_run.end_time is not None,
            "flow_run_run_count": task_run.flow_run_run_count,
        }

    def normalise_run_after(self, run: Run) -> dict[str, Any]:
        """``run_after`` of the step's target, by the target's kind."""
        return self.normalise_flow_run(run) if run.kind == "flow" else self.normalise_task_run(run)

    def normalise_result(self, result: Any, run: Run, before: UUID | None, t0: datetime) -> dict[str, Any]:
        """The normalised outcome of a set_state or resume step."""
        return {
            "status": enum_value(result.status),
            "details": result.details.model_dump(mode="json"),
            "state": self.normalise_state(result.state, t0),
            "state_is_previous": result.state is not None and result.state.id == before,
            "run_after": self.normalise_run_after(run),
        }

    # -- performing steps ---------------------------------------------------------------------

    def target(self, step: dict[str, Any]) -> Run:
        """The run a step acts on (``main`` unless ``target`` says otherwise)."""
        name = step.get("target", "main")
        if name not in self.runs:
            raise KeyError(f"step targets unknown run {name!r}; setup has {sorted(self.runs)}")
        return self.runs[name]

    def set_state(self, step: dict[str, Any], run: Run) -> dict[str, Any]:
        """``set_state``: propose the step's state (relative times from t0), with its force."""
        before = self.current_state_id(run)
        t0 = datetime.now(timezone.utc)
        state = build_state(step["state"], t0)
        force = bool(step.get("force", False))
        if run.kind == "flow":
            result = self.orc.set_flow_run_state(run.id, state, force=force)
        else:
            result = self.orc.set_task_run_state(run.id, state, force=force)
        return self.normalise_result(result, run, before, t0)

    def resume(self, step: dict[str, Any], run: Run) -> dict[str, Any]:
        """``resume``: no ``run_input`` key -> no input; present (even null) -> passed on."""
        before = self.current_state_id(run)
        t0 = datetime.now(timezone.utc)
        if "run_input" in step:
            result = self.orc.resume_flow_run(run.id, run_input=step["run_input"])
        else:
            result = self.orc.resume_flow_run(run.id)
        return self.normalise_result(result, run, before, t0)

    def create_run_input(self, step: dict[str, Any], run: Run) -> dict[str, Any]:
        """``create_run_input``: 201 created, 409 when the key already exists."""
        try:
            self.orc.create_flow_run_input(run.id, step["key"], step["value"])
        except self.flowstate.ObjectAlreadyExists:
            return {"http_status": 409}
        return {"http_status": 201}

    def delete_run_input(self, step: dict[str, Any], run: Run) -> dict[str, Any]:
        """``delete_run_input``: 204 deleted, 404 no such key."""
        try:
            self.orc.delete_flow_run_input(run.id, step["key"])
        except self.flowstate.ObjectNotFound:
            return {"http_status": 404}
        return {"http_status": 204}

    def read_run_input(self, step: dict[str, Any], run: Run) -> dict[str, Any]:
        """``read_run_input``: 200 with the stored string, 404 with null."""
        try:
            value = self.orc.read_flow_run_input(run.id, step["key"])
        except self.flowstate.ObjectNotFound:
            return {"http_status": 404, "value": None}
        return {"http_status": 200, "value": value}

    def sleep(self, step: dict[str, Any], run: Run) -> dict[str, Any]:
        """``sleep``: wait real time (unused by the recorded vectors)."""
        time.sleep(float(step["seconds"]))
        return {}

    def perform(self, step: dict[str, Any]) -> dict[str, Any]:
        """Run one step and return its normalised outcome."""
        handlers: dict[str, Callable[[dict[str, Any], Run], dict[str, Any]]] = {
            "set_state": self.set_state,
            "resume": self.resume,
            "create_run_input": self.create_run_input,
            "delete_run_input": self.delete_run_input,
            "read_run_input": self.read_run_input,
            "sleep": self.sleep,
            **self.limit_handlers(),
        }
        op = step.get("op")
        if op not in handlers:
            raise ValueError(f"unknown op {op!r}")
        return handlers[op](step, self.target(step))

    def compare(self, index: int, step: dict[str, Any], expected: Any, actual: dict[str, Any]) -> list[str]:
        """The mismatches of one step."""
        check = Comparison(f"step {index} ({step.get('op')}):", self.tolerance, self.run_ids)
        if not isinstance(expected, dict):
            check.report("expect", expected, actual)
        elif step.get("op") in ("set_state", "resume"):
            compare_orchestration(check, expected, actual)
        else:
            compare_op(check, expected, actual)
        return check.mismatches

    # -- driver -------------------------------------------------------------------------------

    def run(self) -> list[str]:
        """Set up, perform every step, and return all mismatches (empty = pass).

        An exception stops the replay: it is reported as a mismatch of the step (or setup) that
        raised it, with the innermost frame, and the remaining steps are reported as not run.
        """
        steps: list[dict[str, Any]] = self.vector.get("steps", [])
        expects: list[Any] = self.vector.get("expect", [])
        if len(steps) != len(expects):
            return [f"vector: {len(steps)} steps but {len(expects)} expect entries"]
        try:
            self.setup()
        except Exception as exc:  # noqa: BLE001 - reported, not hidden
            return [f"setup: raised {describe_exception(exc)}"]
        mismatches: list[str] = []
        for index, (step, expected) in enumerate(zip(steps, expects)):
            try:
                actual = self.perform(step)
                if isinstance(expected, dict) and "limits_after" in expected:
                    actual["limits_after"] = self.limits_after()
            except Exception as exc:  # noqa: BLE001 - reported, not hidden
                mismatches.append(f"step {index} ({step.get('op')}): raised {describe_exception(exc)}")
                if index + 1 < len(steps):
                    mismatches.append(f"steps {index + 1}..{len(steps) - 1}: not run")
                break
            mismatches.extend(self.compare(index, step, expected, actual))
        return mismatches

    def close(self) -> None:
        """Release the orchestrator."""
        close = getattr(self.orc, "close", None)
        if close is not None:
            close()


def describe_exception(exc: BaseException) -> str:
    """``Type: message (at file:line in function)`` of the innermost frame."""
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" (at {Path(frames[-1].filename).name}:{frames[-1].lineno} in {frames[-1].name})" if frames else ""
    return f"{type(exc).__name__}: {exc}{where}"


def replay_vector(vector: dict[str, Any], database: Database = ":memory:") -> list[str]:
    """Replay ``vector`` on a fresh ``Orchestrator(database)`` (an empty database: in memory by
    default, or e.g. a new PostgreSQL schema's URL; or a function that makes the orchestrator,
    such as ``ReferenceOrchestrator``); return its mismatches."""
    replay = VectorReplay(vector, database)
    try:
        return replay.run()
    finally:
        replay.close()
