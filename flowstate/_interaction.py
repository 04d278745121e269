"""The Orchestrator's human-in-the-loop methods: pause for typed input, wait, read it back, and
send and receive input between runs (Prefect's client half of interactive workflows).

A mixin of :class:`flowstate.Orchestrator`. Each call is one transaction of the orchestrator's
store (a wait is a series of short ones), and every state change goes through the flow policy
like any other proposal. Waiting sleeps through the orchestrator's ``sleep``, and measures time
on its clock: with a :class:`~flowstate.testing.FrozenClock` a wait never really sleeps.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Generator, Iterator, MutableSet
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal, TypeVar, overload
from uuid import UUID

from flowstate import _validation as validate
from flowstate._engine_parts import EngineParts
from flowstate._ids import uuid7
from flowstate._json_depth import deeper_than_allowed, too_deep_message
from flowstate._models import copy_with
from flowstate._seconds import optional_span, span
from flowstate.errors import InvalidState, ObjectNotFound, RunNotResumed, WaitTimeout
from flowstate.results import OrchestrationResult, SetStateStatus
from flowstate.runs import FlowRun
from flowstate.states import Paused, State, StateType, Suspended

if TYPE_CHECKING:
    from flowstate.run_input import RunInput
    from flowstate.store.base import StoreBackend

__all__ = ["InteractionMethods", "Nap", "Sleeping"]

M = TypeVar("M")
"""The type a caller reads pause input or received input as (``model=``, ``type_``)."""

_RESUMED_TO = frozenset({StateType.RUNNING, StateType.SCHEDULED, StateType.PENDING})
"""The state types a resumed pause leaves for (a suspension resumes to Scheduled)."""


class Nap:
    """What the waits' step generators yield between two checks: seconds to wait. Each check is
    a transaction of its own, so the caller may sleep anywhere (the AsyncOrchestrator sleeps on
    its event loop instead of the engine's thread)."""

    __slots__ = ("seconds",)

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds


def run_steps(steps: Generator[Nap, None, Any], sleep: Callable[[float], object]) -> Any:
    """Run a wait's steps to their end, sleeping through ``sleep`` at each :class:`Nap`;
    returns what the steps return."""
    while True:
        try:
            nap = next(steps)
        except StopIteration as done:
            return done.value
        sleep(nap.seconds)


class Sleeping(Iterator[Any]):
    """The iterator :meth:`InteractionMethods.receive_input` returns: the values of ``steps``,
    sleeping through ``sleep`` at each :class:`Nap` between them."""

    def __init__(self, steps: Iterator[Any], sleep: Callable[[float], object]) -> None:
        self.steps = steps
        self._sleep = sleep

    def __next__(self) -> Any:
        while isinstance(item := next(self.steps), Nap):
            self._sleep(item.seconds)
        return item


def _pause_input_arguments(
    key: str | None, reschedule: Any, wait_for_input: Any, description: Any
) -> tuple[str | None, str | None]:
    """Check ``pause_flow_run``'s arguments about the pause and its input; return the input's
    JSON schema (None: no input asked for) and the description to store with it."""
    if key is not None:
        validate.check_run_input_key(key, "key")
    elif reschedule:
        raise InvalidState(
            "a suspension (reschedule=True) needs a key that stays the same when the run is "
            "executed again, so that the same pause is not fired twice"
        )
    if not isinstance(reschedule, bool):
        raise InvalidState(f"reschedule must be True or False, not {reschedule!r:.40}")
    schema, model_description = (None, None) if wait_for_input is None else _schema_of(
        wait_for_input
    )
    if description is None:
        return schema, model_description
    if not isinstance(description, str):
        raise InvalidState(f"description must be a str, not {type(description).__name__}")
    validate.check_text(description, "description")
    if schema is None:
        raise InvalidState("a description is shown with the input form: pass wait_for_input too")
    return schema, description


def _next_pause_key(store: StoreBackend, run_id: UUID) -> str:
    """The default key of a run's next pause: its number among the run's pauses."""
    pauses = sum(1 for state in store.read_states("flow", run_id) if state.type is StateType.PAUSED)
    return str(pauses + 1)


def _store_pause_input(
    store: StoreBackend,
    run_id: UUID,
    keyset: dict[str, str],
    schema: str,
    description: str | None,
    now: datetime,
) -> None:
    """Store an accepted pause's input schema (and description) under its keyset."""
    stored = [(keyset["schema"], schema)]
    if description is not None:
        stored.append((keyset["description"], json.dumps(description, ensure_ascii=False)))
    for input_key, text in stored:
        if not store.insert_run_input(run_id, input_key, text, None, now):
            raise InvalidState(  # (the pause cleared its keyset: cannot happen)
                f"run input {input_key!r} of flow run {run_id} is taken"
            )


def _check_resumed(run_id: UUID, key: str, left_for: State) -> None:
    """RunNotResumed unless the state a run left its pause ``key`` for is a resume."""
    if left_for.type not in _RESUMED_TO:
        raise RunNotResumed(
            f"flow run {run_id} left its pause {key!r} for "
            f"{left_for.type.value} ({left_for.name}) instead of being resumed"
            + (f": {left_for.message}" if left_for.message else ""),
            left_for,
        )


def _check_still_waiting(
    run_id: UUID,
    key: str,
    now: datetime,
    expires: datetime | None,
    deadline: datetime | None,
    limit: float | None,
) -> None:
    """WaitTimeout once the pause has expired or the wait's ``limit`` (seconds) has passed."""
    if expires is not None and now > expires:
        raise WaitTimeout(
            f"the pause {key!r} of flow run {run_id} expired at {expires.isoformat()} "
            "without a resume"
        )
    if deadline is not None and now >= deadline:
        raise WaitTimeout(
            f"flow run {run_id} was not resumed from its pause {key!r} within {limit} s"
        )


class InteractionMethods(EngineParts):
    """Pausing for input, waiting for the resume, and run-to-run messages (mixed into
    Orchestrator)."""

    # -- pausing -----------------------------------------------------------------------------

    def pause_flow_run(
        self,
        id: UUID | str,
        *,
        key: str | None = None,
        timeout: float | None = 3600,
        wait_for_input: Any = None,
        description: str | None = None,
        reschedule: bool = False,
    ) -> OrchestrationResult:
        """Pause a running flow run, optionally for typed input; does not wait (see
        :meth:`wait_for_resume`).

        Proposes ``Paused(timeout_seconds=timeout, pause_key=key)`` (``Suspended`` with
        ``reschedule=True``) and, only if it is accepted, stores the input's JSON schema (and
        ``description``, Markdown shown above the input form) under the pause's keyset, all in
        one transaction: a refused pause writes nothing. ``wait_for_input`` is a
        :class:`~flowstate.RunInput` subclass, any pydantic model class, a plain type (``str``,
        ``int``, ``list[int]``, ...: one field, ``value``) or a JSON-Schema dict.

        ``key`` defaults to this pause's number among the run's pauses (``"1"``, ``"2"``, ...);
        a suspension needs one, stable across executions of the run, so that the same pause is
        not fired twice. ``timeout`` is in seconds on the orchestrator's clock (None: never).
        """
        run_id = validate.run_id(id)
        seconds = None if timeout is None else _pause_timeout(timeout)
        schema, description = _pause_input_arguments(key, reschedule, wait_for_input, description)
        with self._transaction():
            now = self._now()
            store = self._store
            self._flow_run_exists(run_id)
            if key is None:
                key = _next_pause_key(store, run_id)
            make = Suspended if reschedule else Paused
            proposed = make(timeout_seconds=seconds, pause_key=key)
            if schema is None:
                return self._orchestrate_flow(run_id, proposed, force=False, now=now)
            from flowstate.run_input import keyset_from_paused_state

            keyset = keyset_from_paused_state(proposed)
            details = copy_with(proposed.state_details, {"run_input_keyset": keyset})
            proposed = copy_with(proposed, {"state_details": details})
            result = self._orchestrate_flow(run_id, proposed, force=False, now=now)
            if result.status is SetStateStatus.ACCEPT:
                _store_pause_input(store, run_id, keyset, schema, description, now)
            return result

    @overload
    def read_pause_input(self, id: UUID | str, *, key: str, model: None = None) -> Any: ...
    @overload
    def read_pause_input(self, id: UUID | str, *, key: str, model: type[M]) -> M | None: ...
    @overload
    def read_pause_input(self, id: UUID | str, *, key: str, model: object) -> Any: ...

    def read_pause_input(self, id: UUID | str, *, key: str, model: Any = None) -> Any:
        """The input the pause ``key`` was resumed with, or None if there is none (yet).

        With ``model`` (what ``wait_for_input`` accepts) it is read as that model: an instance,
        or the plain value for a plain type; else the stored JSON object as a dict.
        ObjectNotFound if the run was never paused with ``key``.
        """
        run_id = validate.run_id(id)
        validate.check_run_input_key(key, "key")
        as_model = None if model is None else _model_of(model, "model")
        with self._transaction():
            states = self._history(run_id)
            index = _pause_index(states, key, run_id)
            return self._pause_input(run_id, states[index], as_model)

    @overload
    def wait_for_resume(
        self, id: UUID | str, *, key: str, model: None = None, timeout: float | None = None,
        poll_interval: float = 1.0,
    ) -> Any: ...
    @overload
    def wait_for_resume(
        self, id: UUID | str, *, key: str, model: type[M], timeout: float | None = None,
        poll_interval: float = 1.0,
    ) -> M | None: ...
    @overload
    def wait_for_resume(
        self, id: UUID | str, *, key: str, model: object, timeout: float | None = None,
        poll_interval: float = 1.0,
    ) -> Any: ...

    def wait_for_resume(
        self,
        id: UUID | str,
        *,
        key: str,
        model: Any = None,
        timeout: float | None = None,
        poll_interval: float = 1.0,
    ) -> Any:
        """Block until the run leaves its pause ``key``, then return :meth:`read_pause_input`.

        Raises :class:`~flowstate.RunNotResumed` if the run was cancelled, failed or crashed
        instead, and :class:`~flowstate.WaitTimeout` when ``timeout`` seconds pass or the pause
        itself expires (both on the orchestrator's clock). The run is checked every
        ``poll_interval`` seconds, sleeping through the orchestrator's ``sleep``; Ctrl-C stops
        the wait at once.
        """
        steps = self._resume_steps(
            id, key=key, model=model, timeout=timeout, poll_interval=poll_interval
        )
        return run_steps(steps, self._sleep)

    def _resume_steps(
        self,
        id: UUID | str,
        *,
        key: str,
        model: Any = None,
        timeout: float | None = None,
        poll_interval: float = 1.0,
    ) -> Generator[Nap, None, Any]:
        """:meth:`wait_for_resume` as steps: each check is one transaction; between two, the
        generator yields how long to wait (the caller sleeps: the sync engine, or an event loop)."""
        run_id = validate.run_id(id)
        validate.check_run_input_key(key, "key")
        as_model = None if model is None else _model_of(model, "model")
        self._not_in_a_block("wait_for_resume")
        interval = span(poll_interval, "poll_interval", zero=False)
        limit = optional_span(timeout, "timeout")
        deadline = None if limit is None else self._now() + timedelta(seconds=limit)
        while True:
            with self._transaction():
                now = self._now()
                states = self._history(run_id)
                index = _pause_index(states, key, run_id)
                pause = states[index]
                if index + 1 < len(states):
                    _check_resumed(run_id, key, states[index + 1])
                    return self._pause_input(run_id, pause, as_model)
            expires = pause.state_details.pause_timeout
            _check_still_waiting(run_id, key, now, expires, deadline, limit)
            yield Nap(_next_nap(interval, now, deadline, expires))

    # -- run-to-run input --------------------------------------------------------------------

    def send_input(
        self,
        run_id: UUID | str,
        value: Any,
        *,
        key_prefix: str | None = None,
        sender: UUID | str | None = None,
    ) -> str:
        """Send ``value`` to a flow run, as Prefect's ``send_input``; returns the key it is
        stored under (``{key_prefix}-{uuid}``).

        ``value`` is a :class:`~flowstate.RunInput`, a pydantic model, or a plain value (stored
        as ``{"value": ...}``); the key prefix defaults to the model's name in lower case
        followed by ``-auto`` (``strautomaticruninput-auto`` for a str), which is where
        :meth:`receive_input` of the same type looks. ``sender`` is text, or the id of the
        sending flow run (stored as ``prefect.flow-run.<id>``, as Prefect's client does).
        """
        from flowstate.run_input import default_key_prefix, input_value, stored_value_json

        receiver = validate.run_id(run_id)
        instance = input_value(value)
        prefix = key_prefix if key_prefix is not None else default_key_prefix(type(instance))
        validate.check_run_input_key(prefix, "key_prefix")
        if isinstance(sender, UUID):
            sender = f"prefect.flow-run.{sender}"
        elif sender is not None and not isinstance(sender, str):
            raise InvalidState(f"sender must be a str, a UUID or None, not {type(sender).__name__}")
        text = stored_value_json(instance)
        key = f"{prefix}-{uuid7()}"
        self.create_flow_run_input(receiver, key, text, sender=sender)
        return key

    @overload
    def receive_input(
        self, run_id: UUID | str, type_: type[M], *, key_prefix: str | None = None,
        timeout: float | None = 3600, poll_interval: float = 10, raise_timeout_error: bool = False,
        exclude_keys: MutableSet[str] | None = None, with_metadata: Literal[False] = False,
    ) -> Iterator[M]: ...
    @overload
    def receive_input(
        self, run_id: UUID | str, type_: object, *, key_prefix: str | None = None,
        timeout: float | None = 3600, poll_interval: float = 10, raise_timeout_error: bool = False,
        exclude_keys: MutableSet[str] | None = None, with_metadata: bool = False,
    ) -> Iterator[Any]: ...

    def receive_input(
        self,
        run_id: UUID | str,
        type_: Any,
        *,
        key_prefix: str | None = None,
        timeout: float | None = 3600,
        poll_interval: float = 10,
        raise_timeout_error: bool = False,
        exclude_keys: MutableSet[str] | None = None,
        with_metadata: bool = False,
    ) -> Iterator[Any]:
        """Iterate over the inputs of ``type_`` sent to a flow run, in the order sent, as
        Prefect's ``receive_input``.

        Each input is yielded once per ``exclude_keys`` set: its key is added to the set, so
        passing the same set to a later call skips what was received before. Waits up to
        ``timeout`` seconds for each next input (None: for ever), checking every
        ``poll_interval`` seconds; then the iteration ends, or raises
        :class:`~flowstate.WaitTimeout` with ``raise_timeout_error``. A plain type yields plain
        values, unless ``with_metadata`` (then models with ``.value`` and ``.metadata``); models
        always carry ``.metadata`` (key, sender, receiver).
        """
        from flowstate.run_input import default_key_prefix

        receiver = validate.run_id(run_id)
        as_model = _model_of(type_, "type_")
        prefix = key_prefix if key_prefix is not None else default_key_prefix(as_model)
        validate.check_run_input_key(prefix, "key_prefix")
        limit = optional_span(timeout, "timeout")
        interval = span(poll_interval, "poll_interval", zero=False)
        if exclude_keys is None:
            exclude_keys = set()
        elif not isinstance(exclude_keys, MutableSet):
            raise InvalidState(
                f"exclude_keys must be a set (received keys are added to it), not "
                f"{type(exclude_keys).__name__}"
            )
        self._not_in_a_block("receive_input")
        with self._transaction():
            self._flow_run_exists(receiver)
        steps = self._receive(
            receiver, as_model, prefix, limit, interval, raise_timeout_error, exclude_keys,
            with_metadata,
        )
        return Sleeping(steps, self._sleep)

    def _receive(
        self,
        receiver: UUID,
        as_model: type[RunInput],
        prefix: str,
        limit: float | None,
        interval: float,
        raise_timeout_error: bool,
        exclude_keys: MutableSet[str],
        with_metadata: bool,
    ) -> Iterator[Any]:
        """The inputs as they come, with a :class:`Nap` between two checks that found none."""
        from flowstate.run_input import RunInputMetadata, load_input

        while True:  # each input: wait up to ``limit`` for it, then yield it
            deadline = None if limit is None else self._now() + timedelta(seconds=limit)
            while (found := self._unseen_input(receiver, prefix, exclude_keys)) is None:
                now = self._now()
                if deadline is not None and now >= deadline:
                    if raise_timeout_error:
                        raise WaitTimeout(
                            f"no new input under {prefix!r} reached flow run {receiver} "
                            f"within {limit} s"
                        )
                    return
                yield Nap(_next_nap(interval, now, deadline, None))
            key, text, sender = found
            exclude_keys.add(key)
            metadata = RunInputMetadata(key=key, sender=sender, receiver=receiver)
            yield load_input(as_model, text, metadata, with_metadata=with_metadata)

    def _unseen_input(
        self, receiver: UUID, prefix: str, exclude_keys: MutableSet[str]
    ) -> tuple[str, str, str | None] | None:
        """The first input under ``prefix`` whose key is not in ``exclude_keys`` (one
        transaction), as (key, JSON text, sender); None if there is none."""
        with self._transaction():
            self._flow_run_exists(receiver)
            rows = self._store.read_run_inputs(receiver, prefix)
            return next((row for row in rows if row[0] not in exclude_keys), None)

    # -- helpers -----------------------------------------------------------------------------

    def _not_in_a_block(self, what: str) -> None:
        """Waiting inside ``transaction()`` would hold it open: no one else could answer."""
        if self._store.in_transaction:
            raise InvalidState(
                f"{what} waits for other callers, so it cannot run inside a transaction() block"
            )

    def _flow_run_exists(self, run_id: UUID) -> FlowRun:
        return validate.found(self._store.read_flow_run(run_id), "flow", run_id)

    def _history(self, run_id: UUID) -> list[State]:
        self._flow_run_exists(run_id)
        return self._store.read_states("flow", run_id)

    def _pause_input(self, run_id: UUID, pause: State, as_model: type[RunInput] | None) -> Any:
        """The response stored under ``pause``'s keyset (inside a transaction), decoded."""
        keyset = pause.state_details.run_input_keyset
        if not keyset or "response" not in keyset:
            return None
        text = self._store.read_run_input(run_id, keyset["response"])
        if text is None:
            return None
        if as_model is None:
            return _stored_json(run_id, keyset["response"], text)
        from flowstate.run_input import RunInputMetadata, load_input

        metadata = RunInputMetadata(key=keyset["response"], sender=None, receiver=run_id)
        return load_input(as_model, text, metadata)


def _stored_json(run_id: UUID, key: str, text: str) -> Any:
    """Stored run-input text read as JSON; InvalidState if it is not (it may have been stored
    by hand: ``create_flow_run_input`` takes any text)."""
    from flowstate.orchestration.resume import loads_json

    try:
        return loads_json(text)
    except (ValueError, RecursionError) as exc:  # (not JSON, NaN / Infinity, or too deep)
        problem = "nested too deeply to read" if isinstance(exc, RecursionError) else str(exc)
        raise InvalidState(
            f"run input {key!r} of flow run {run_id} is not JSON: {problem} (read it as text "
            "with read_flow_run_input)"
        ) from None


def _pause_index(states: list[State], key: str, run_id: UUID) -> int:
    """The index of the run's latest pause with ``key``; ObjectNotFound if there is none."""
    for index in range(len(states) - 1, -1, -1):
        state = states[index]
        if state.type is StateType.PAUSED and state.state_details.pause_key == key:
            return index
    raise ObjectNotFound(f"flow run {run_id} was never paused with key {key!r}")


def _pause_timeout(value: Any) -> float:
    """A pause's ``timeout``: seconds >= 0 (the pause's state checks that its end is a date)."""
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not 0 <= value < math.inf  # (False for NaN)
    ):
        raise InvalidState(f"timeout={value!r:.40}; expected a finite number of seconds >= 0")
    return value


def _next_nap(
    interval: float, now: datetime, deadline: datetime | None, expires: datetime | None
) -> float:
    """How long to sleep before the next check: ``interval``, or less to wake at a deadline."""
    nap = interval
    for moment in (deadline, expires):
        if moment is not None:
            left = (moment - now).total_seconds()
            nap = min(nap, max(left, 0.0) + (1e-3 if moment is expires else 0.0))
    return nap


def _model_of(given: Any, what: str) -> type[RunInput]:
    from flowstate.run_input import input_model

    return input_model(given, what)


def _schema_of(given: Any) -> tuple[str, str | None]:
    """The schema text to store for ``wait_for_input``, and the model's description."""
    if isinstance(given, dict):
        return _checked_schema(given), None
    from flowstate.run_input import schema_text

    model = _model_of(given, "wait_for_input")
    return schema_text(model), model._description


def _checked_schema(schema: dict[str, Any]) -> str:
    """A JSON-Schema dict as compact JSON; InvalidState if it is not valid JSON Schema."""
    from flowstate.orchestration.resume import schema_problem

    try:
        text = json.dumps(schema, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError, RecursionError) as exc:
        raise InvalidState(f"wait_for_input is not JSON: {exc}") from None
    if deeper_than_allowed(schema):
        raise InvalidState(too_deep_message("wait_for_input"))
    validate.check_text(text, "wait_for_input")
    problem = schema_problem(json.loads(text))
    if problem is not None:
        raise InvalidState(f"wait_for_input is not a usable JSON schema: {problem}")
    return text
