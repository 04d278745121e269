"""AsyncOrchestrator: the Orchestrator's calls as coroutines, for asyncio programs.

One engine: an :class:`~flowstate.Orchestrator` lives in a thread of its own (``_worker.py``),
which opens it and runs the calls queued to it one by one; the event loop only queues a call
and awaits its answer, so a call waiting for another process's write lock never stops the loop.

Cancellation: a call still queued when its task is cancelled is taken back and never runs; a
call that has started runs to its end (committed with its listeners told, or rolled back), and
only then does ``CancelledError`` leave the ``await``, with a note saying which happened.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import os
import threading
import time
import weakref
from contextlib import suppress
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from datetime import datetime
from typing import Any, Concatenate, ParamSpec, TypeVar

from flowstate._interaction import Nap
from flowstate._workers import due_run_arguments
from flowstate.aio._worker import Job, Worker, wake
from flowstate.aio.concurrency import AsyncHeldSlots
from flowstate.aio.subscription import AsyncSubscription
from flowstate.concurrency import checks
from flowstate.errors import DatabaseError, FlowstateError, InvalidState
from flowstate.listeners import Listener, Listeners, TransitionEvent, checked_maxsize
from flowstate.orchestration.policy import Policy
from flowstate.orchestrator import Orchestrator, _sleep_for
from flowstate.runs import FlowRun
from flowstate.store.connection import Synchronous

__all__ = ["AsyncOrchestrator"]

P = ParamSpec("P")
R = TypeVar("R")


def _twin(
    method: Callable[Concatenate[Orchestrator, P], R],
) -> Callable[Concatenate[AsyncOrchestrator, P], Coroutine[Any, Any, R]]:
    """The coroutine form of an Orchestrator method: same name, parameters and docstring."""

    async def call(self: AsyncOrchestrator, /, *args: P.args, **kwargs: P.kwargs) -> R:
        return await self._call(method, args, kwargs)  # type: ignore[no-any-return]

    functools.update_wrapper(call, method)
    return call


def _waiting_twin(
    steps: Callable[..., Iterator[Nap]],
) -> Callable[
    [Callable[Concatenate[Orchestrator, P], R]],
    Callable[Concatenate[AsyncOrchestrator, P], Coroutine[Any, Any, R]],
]:
    """The coroutine form of a method that waits (``wait_for_resume``):
    ``_waiting_twin(steps)(method)``. ``steps`` (its checks, each a transaction, with a
    :class:`Nap` between two) run in the engine's thread one by one, and the naps pass on the
    event loop, so a wait holds up neither. (The method is given alone, so that a type checker
    keeps its overloads.)"""

    def twin(
        method: Callable[Concatenate[Orchestrator, P], R],
    ) -> Callable[Concatenate[AsyncOrchestrator, P], Coroutine[Any, Any, R]]:
        async def call(self: AsyncOrchestrator, /, *args: P.args, **kwargs: P.kwargs) -> R:
            # (``steps`` takes the arguments of ``method``, with the same defaults)
            return await self._run_steps(steps, args, kwargs)  # type: ignore[no-any-return]

        functools.update_wrapper(call, method)
        return call

    return twin


def _iterating_twin(
    method: Callable[Concatenate[Orchestrator, P], Iterator[R]],
) -> Callable[Concatenate[AsyncOrchestrator, P], AsyncIterator[R]]:
    """The async-iterator form of a method that returns a waiting iterator (``receive_input``):
    the call and each step of the iterator run in the engine's thread, the naps between two
    steps on the event loop."""

    def call(self: AsyncOrchestrator, /, *args: P.args, **kwargs: P.kwargs) -> AsyncIterator[R]:
        return self._iterate(method, args, kwargs)

    functools.update_wrapper(call, method)
    return call


class _Block:
    """The outermost ``async with orc.transaction()`` open now, the task that owns it, and the
    tasks waiting for it to end, which may belong to other event loops (other threads): each
    is woken in its own loop."""

    __slots__ = ("task", "_ended", "_waiters", "_lock")

    def __init__(self, task: asyncio.Task[Any] | None) -> None:
        self.task = task
        self._ended = False
        self._waiters: list[asyncio.Future[None]] = []
        self._lock = threading.Lock()

    async def wait(self) -> None:
        """Wait until the block has ended."""
        with self._lock:
            if self._ended:
                return
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
        await waiter

    def end(self) -> None:
        with self._lock:
            self._ended = True
            waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            wake(waiter)


class _Entry:
    """One entry into an :class:`AsyncTransaction`: the task that entered, the block it
    opened (None when nested in a block of its task), and the engine's transaction."""

    __slots__ = ("task", "block", "inner")

    def __init__(self, task: asyncio.Task[Any] | None, block: _Block | None) -> None:
        self.task = task
        self.block = block
        self.inner: Any = None


class AsyncTransaction:
    """``async with orc.transaction():`` -- the calls inside commit together, or not at all.

    Leaving the block by an exception, a cancellation or a timeout rolls the whole block back.
    While it is open, calls from other tasks wait for it to end (as other threads wait for a
    sync block); nested blocks in the owning task are savepoints. As the sync block, it may be
    entered again while open in the same task: that entry nests, as another ``transaction()``
    would; each exit ends the task's innermost entry, and leaving it in a task where it is not
    open is InvalidState, with nothing ended.
    """

    __slots__ = ("_orc", "_entries")

    def __init__(self, orc: AsyncOrchestrator) -> None:
        self._orc = orc
        self._entries: list[_Entry] = []  # open entries, oldest first (of any task)

    async def __aenter__(self) -> None:
        orc = self._orc
        task = asyncio.current_task()
        while True:  # (checked and queued under the gate: another thread's loop may open one)
            with orc._gate:
                block = orc._block
                if block is None:
                    orc._block = _Block(task)
                if block is None or block.task is task:
                    entry = _Entry(task, orc._block if block is None else None)
                    job = orc._submit(_enter_transaction, (orc._worker,), {})
                    break
            await block.wait()
        try:
            entry.inner = await orc._outcome(job)
        except BaseException as exc:
            # opened, then the task was cancelled: undo it (a failure to open is the job's
            # error, which _outcome raises and clears: nothing to undo then)
            if isinstance(exc, asyncio.CancelledError) and job.done and job.error is None:
                entry.inner = job.value
                await self._exit(entry, exc)
            self._release(entry)
            raise
        self._entries.append(entry)

    async def __aexit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        task = asyncio.current_task()
        for index in range(len(self._entries) - 1, -1, -1):
            if self._entries[index].task is task:
                await self._exit(self._entries.pop(index), exc)
                return
        raise InvalidState(
            "this transaction block is not open in this task: leave a block in the task that "
            "entered it, once per entry"
        )

    async def _exit(self, entry: _Entry, exc: BaseException | None) -> None:
        orc = self._orc
        try:
            outermost = entry.block is not None
            job = orc._submit(_exit_transaction, (orc._worker, entry.inner, exc, outermost), {})
            # the block ends before its listeners run: they may make calls from other tasks
            await orc._outcome(job, shielded=True, settled=functools.partial(self._release, entry))
        finally:
            self._release(entry)

    def _release(self, entry: _Entry) -> None:
        block, entry.block = entry.block, None
        if block is not None:
            with self._orc._gate:
                if self._orc._block is block:
                    self._orc._block = None
            block.end()


def _enter_transaction(orc: Orchestrator, worker: Worker) -> Any:
    return worker.enter_block(orc)


def _exit_transaction(
    orc: Orchestrator, worker: Worker, inner: Any, exc: BaseException | None, outermost: bool
) -> None:
    worker.exit_block(orc, inner, exc)


class AsyncOrchestrator:
    """The :class:`~flowstate.Orchestrator`'s calls as coroutines: same names, parameters and
    results, the same engine and database underneath.

    >>> import asyncio
    >>> from flowstate import AsyncOrchestrator
    >>> from flowstate.states import Pending
    >>> async def main():
    ...     async with AsyncOrchestrator(":memory:") as orc:
    ...         run = await orc.create_flow_run(flow_name="etl")
    ...         return (await orc.set_flow_run_state(run.id, Pending())).status.value
    >>> asyncio.run(main())
    'ACCEPT'

    The options are the Orchestrator's. The database is opened in the orchestrator's own
    thread as soon as it is made; an error opening it is raised by ``open()``, ``async with``
    and every call. The calls run one at a time, in the order they were made; they may come
    from any event loop (one at a time).
    """

    def __init__(
        self,
        database: str | os.PathLike[str] | None = None,
        *,
        clock: Callable[[], datetime] | None = None,
        uniform: Callable[[float, float], float] | None = None,
        busy_timeout: float = 30.0,
        synchronous: Synchronous = "NORMAL",
        flow_policy: Policy | None = None,
        task_policy: Policy | None = None,
        sleep: Callable[[float], object] | None = None,
        call_timeout: float | None = None,
    ) -> None:
        try:
            # waits pass time on the event loop, unless a clock or a sleep of its own is given
            self._sleep = _sleep_for(clock, sleep)
        except FlowstateError:
            self._sleep = time.sleep  # (opening raises the same error)
        opener = functools.partial(
            Orchestrator,
            database,
            clock=clock,
            uniform=uniform,
            busy_timeout=busy_timeout,
            synchronous=synchronous,
            flow_policy=flow_policy,
            task_policy=task_policy,
            sleep=sleep,
            call_timeout=call_timeout,
        )
        self._worker = Worker(opener)
        # an orchestrator dropped without close() still stops its thread and closes its database
        self._finalizer = weakref.finalize(self, self._worker.stop)
        self._block: _Block | None = None
        self._gate = threading.Lock()  # (held to check for a block and queue a call at once)
        self._listeners = Listeners()  # registry and errors only: events come from the worker
        self._subscriptions: list[AsyncSubscription] = []

    # -- lifecycle -------------------------------------------------------------------------

    async def open(self) -> AsyncOrchestrator:
        """Wait until the database is open (raises what opening it raised)."""
        await self._call(_opened, (), {})
        return self

    async def __aenter__(self) -> AsyncOrchestrator:
        return await self.open()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Release the database once the calls queued before are done; later calls raise
        DatabaseError (as on a closed Orchestrator). When it returns, the orchestrator's
        thread has ended."""
        worker = self._worker
        if not worker.stopped:
            try:
                await self._call(Orchestrator.close, (), {})
            finally:
                worker.stop()
        await asyncio.wrap_future(worker.ended)
        worker.join()  # (at once: the thread has nothing left to do but end)

    def _shutdown(self, timeout: float | None = None) -> None:
        """Stop the thread and close the database without an event loop (the pytest fixture)."""
        self._worker.stop()
        self._worker.join(timeout)

    @property
    def database(self) -> str:
        """The database path this orchestrator uses (a PostgreSQL URL with its password masked)."""
        return self._opened_orchestrator().database

    @property
    def flow_policy(self) -> Policy:
        """The flow policy deciding flow-run transitions."""
        return self._opened_orchestrator().flow_policy

    @property
    def task_policy(self) -> Policy:
        """The task policy deciding task-run transitions."""
        return self._opened_orchestrator().task_policy

    def _opened_orchestrator(self) -> Orchestrator:
        worker = self._worker
        if not worker.opened.is_set():
            raise DatabaseError("the database is still opening: await orc.open() first")
        if worker.orchestrator is None:
            assert worker.open_error is not None
            raise worker.open_error
        return worker.orchestrator

    def transaction(self) -> AsyncTransaction:
        """Group calls: ``async with orc.transaction():`` -- everything inside commits together,
        or nothing does (an exception, a cancellation or a timeout rolls it all back).

        Listeners hear of the transitions made inside once the whole block has committed.
        """
        return AsyncTransaction(self)

    # -- listeners -------------------------------------------------------------------------

    def add_listener(self, callback: Listener) -> Callable[[], None]:
        """Call ``callback(event)`` after each committed transition that wrote a state.

        ``callback`` may be a coroutine function. Listeners run on the event loop after the
        commit, in the task that made the call, before the call returns, in the order they
        were added: each is called, and its answer awaited if it is awaitable. Their exceptions
        are logged and kept in ``listener_errors``. Returns a function that removes the listener.
        """
        self._listeners.add(callback)
        self._listening_changed()

        def remove() -> None:
            self._listeners.remove(callback)
            self._listening_changed()

        return remove

    def subscribe(self, maxsize: int = 0) -> AsyncSubscription:
        """Committed transitions as an async iterator of
        :class:`~flowstate.listeners.TransitionEvent`, in commit order::

            async with orc.subscribe() as events:
                async for event in events: ...

        ``maxsize`` (0: no bound) caps the events held for a slow subscriber: the oldest is
        dropped and counted in ``dropped``; a call never waits for the subscriber.
        """
        subscription = AsyncSubscription(
            checked_maxsize(maxsize), lambda: self._forget_subscription(subscription)
        )
        self._subscriptions = [*self._subscriptions, subscription]
        self._listening_changed()
        return subscription

    def _forget_subscription(self, subscription: AsyncSubscription) -> None:
        self._subscriptions = [s for s in self._subscriptions if s is not subscription]
        self._listening_changed()

    def _listening_changed(self) -> None:
        self._worker.record_events(bool(self._listeners.callbacks or self._subscriptions))

    @property
    def listener_errors(self) -> list[tuple[Listener, TransitionEvent, BaseException]]:
        """Exceptions raised by listeners (which never undo a committed transition)."""
        return self._listeners.errors

    # -- running calls ---------------------------------------------------------------------

    async def _call(
        self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        """Run ``fn(orchestrator, *args, **kwargs)`` in the worker thread and return its result."""
        try:
            job = await self._submit_in_turn(fn, args, kwargs)
        except asyncio.CancelledError as exc:
            exc.add_note(
                f"flowstate: {_name(fn)} was cancelled before it started: it did nothing "
                "(it was waiting for another task's transaction block to end)"
            )
            raise
        return await self._outcome(job)

    async def _submit_in_turn(
        self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Job:
        """Queue the call once no other task's ``transaction()`` block is open (the check and
        the queueing under one lock: a loop in another thread may open a block meanwhile)."""
        task = None
        while True:
            with self._gate:
                block = self._block
                if block is None or block.task is (task := task or asyncio.current_task()):
                    return self._submit(fn, args, kwargs)
            await block.wait()

    async def _call_to_the_end(
        self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        """``_call`` for what must happen even when its task is cancelled (giving held slots
        back): it waits, as every call does, for another task's ``transaction()`` block to end
        (so that it is not committed or rolled back with that block), then runs; a cancellation
        meanwhile goes on after it."""
        cancelled: asyncio.CancelledError | None = None
        while True:
            try:
                job = await self._submit_in_turn(fn, args, kwargs)
                break
            except asyncio.CancelledError as exc:
                cancelled = cancelled or exc
        try:
            value = await self._outcome(job, shielded=True)
        except Exception:
            if cancelled is None:
                raise
            value = None
        if cancelled is not None:
            raise cancelled
        return value

    def _submit(self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Job:
        job = Job(fn, args, kwargs, self._deliver)
        self._worker.submit(job)
        return job

    def _deliver(self, job: Job) -> None:
        """On the loop, in commit order: hand the job's events to the subscriptions."""
        if job.events:
            for subscription in self._subscriptions:
                subscription._put(job.events)

    async def _outcome(
        self, job: Job, *, shielded: bool = False, settled: Callable[[], None] | None = None
    ) -> Any:
        """The job's result, once it is done and its listeners have run.

        If the awaiting task is cancelled while the job is queued, the job is taken back and
        the cancellation goes on at once. If the job has started, it runs to its end and its
        listeners run; then the cancellation goes on, noted with what the call did.
        ``shielded``: the job may not be taken back (the end of a transaction block);
        ``settled`` is called once the job is done, before its listeners run.
        """
        take_back = None if shielded else functools.partial(self._take_back, job)
        cancelled = await _until_done(job.future, take_back)
        if settled is not None:
            settled()
        if job.events and self._listeners.callbacks:
            cancelled = await self._tell(job.events) or cancelled
        if cancelled is not None:
            self._note_what_it_did(cancelled, job)
            raise cancelled
        if job.error is not None:
            error, job.error = job.error, None
            raise error
        return job.value

    def _take_back(self, job: Job, cancelled: asyncio.CancelledError) -> bool:
        """Take back a job still queued, noting so on the cancellation that asked; False
        once the job has started (it runs to its end)."""
        if not job.ticket.cancel():
            return False
        cancelled.add_note(
            f"flowstate: {_name(job.fn)} was cancelled before it started: it did nothing"
        )
        return True

    def _note_what_it_did(self, cancelled: asyncio.CancelledError, job: Job) -> None:
        """Note on the cancellation of a job that had started what the job did meanwhile."""
        block = self._block
        in_block = block is not None and block.task is asyncio.current_task()
        cancelled.add_note(
            f"flowstate: {_name(job.fn)} had started when its task was cancelled; it ran to its "
            f"end first and {_what_it_did(job, in_block)}"
        )

    async def _tell(self, events: list[TransitionEvent]) -> asyncio.CancelledError | None:
        """Tell the listeners about ``events``; a cancellation meanwhile waits until all are
        told (it is returned).

        The listeners are called here, in order, until one returns an awaitable (a coroutine
        function's, or a plain function's that returns a coroutine, such as ``lambda event:
        notify(event)``): from there on a task awaits each answer before the next call."""
        callbacks = self._listeners.callbacks  # (a new list on each change)
        calls = ((callback, event) for event in events for callback in callbacks)
        waiting = _call_until_awaitable(self._listeners, calls)
        if waiting is None:
            return None  # nothing to await: nothing to interrupt
        task = asyncio.ensure_future(_await_listeners(self._listeners, waiting, calls))
        return await _until_done(task)

    # -- the calls -------------------------------------------------------------------------

    create_flow_run = _twin(Orchestrator.create_flow_run)
    read_flow_run = _twin(Orchestrator.read_flow_run)
    read_flow_runs = _twin(Orchestrator.read_flow_runs)
    delete_flow_run = _twin(Orchestrator.delete_flow_run)
    set_flow_run_state = _twin(Orchestrator.set_flow_run_state)
    read_flow_run_states = _twin(Orchestrator.read_flow_run_states)
    resume_flow_run = _twin(Orchestrator.resume_flow_run)
    create_flow_run_input = _twin(Orchestrator.create_flow_run_input)
    read_flow_run_input = _twin(Orchestrator.read_flow_run_input)
    delete_flow_run_input = _twin(Orchestrator.delete_flow_run_input)
    create_task_run = _twin(Orchestrator.create_task_run)
    read_task_run = _twin(Orchestrator.read_task_run)
    read_task_runs = _twin(Orchestrator.read_task_runs)
    delete_task_run = _twin(Orchestrator.delete_task_run)
    set_task_run_state = _twin(Orchestrator.set_task_run_state)
    read_task_run_states = _twin(Orchestrator.read_task_run_states)
    claim_due_flow_runs = _twin(Orchestrator.claim_due_flow_runs)
    heartbeat = _twin(Orchestrator.heartbeat)
    set_heartbeat_timeout = _twin(Orchestrator.set_heartbeat_timeout)
    mark_lost_runs = _twin(Orchestrator.mark_lost_runs)
    mark_late_runs = _twin(Orchestrator.mark_late_runs)

    pause_flow_run = _twin(Orchestrator.pause_flow_run)
    read_pause_input = _twin(Orchestrator.read_pause_input)
    wait_for_resume = _waiting_twin(Orchestrator._resume_steps)(Orchestrator.wait_for_resume)
    send_input = _twin(Orchestrator.send_input)
    receive_input = _iterating_twin(Orchestrator.receive_input)

    create_deployment = _twin(Orchestrator.create_deployment)
    read_deployment = _twin(Orchestrator.read_deployment)
    read_deployments = _twin(Orchestrator.read_deployments)
    update_deployment = _twin(Orchestrator.update_deployment)
    create_global_concurrency_limit = _twin(Orchestrator.create_global_concurrency_limit)
    read_global_concurrency_limit = _twin(Orchestrator.read_global_concurrency_limit)
    read_global_concurrency_limits = _twin(Orchestrator.read_global_concurrency_limits)
    update_global_concurrency_limit = _twin(Orchestrator.update_global_concurrency_limit)
    delete_global_concurrency_limit = _twin(Orchestrator.delete_global_concurrency_limit)
    reset_global_concurrency_limit = _twin(Orchestrator.reset_global_concurrency_limit)
    increment_concurrency_slots = _twin(Orchestrator.increment_concurrency_slots)
    decrement_concurrency_slots = _twin(Orchestrator.decrement_concurrency_slots)
    increment_concurrency_slots_with_lease = _twin(
        Orchestrator.increment_concurrency_slots_with_lease
    )
    renew_concurrency_lease = _twin(Orchestrator.renew_concurrency_lease)
    release_concurrency_lease = _twin(Orchestrator.release_concurrency_lease)
    read_concurrency_leases = _twin(Orchestrator.read_concurrency_leases)
    create_concurrency_limit = _twin(Orchestrator.create_concurrency_limit)
    read_concurrency_limit = _twin(Orchestrator.read_concurrency_limit)
    read_concurrency_limits = _twin(Orchestrator.read_concurrency_limits)
    reset_concurrency_limit = _twin(Orchestrator.reset_concurrency_limit)
    delete_concurrency_limit = _twin(Orchestrator.delete_concurrency_limit)
    renew_task_run_slots = _twin(Orchestrator.renew_task_run_slots)
    expire_leases = _twin(Orchestrator.expire_leases)
    rate_limit = _waiting_twin(Orchestrator._rate_limit_steps)(Orchestrator.rate_limit)

    def concurrency(
        self,
        names: str | list[str],
        occupy: int = 1,
        timeout: float | None = None,
        *,
        lease_duration: float = 300,
        strict: bool = False,
        holder: Any = None,
    ) -> AsyncHeldSlots:
        """``async with orc.concurrency("warehouse", occupy=1, timeout=30):`` -- hold the
        slots for the block, as :meth:`Orchestrator.concurrency <flowstate.Orchestrator.
        concurrency>` does: the waits pass on the event loop, a task renews the lease while
        the block runs (every third of ``lease_duration`` in real seconds, as there), and leaving it (also by an exception or a cancellation) releases it."""
        wanted, count, options = checks.block_arguments(
            names, occupy, wait=timeout, duration=lease_duration, strict=strict, held_by=holder
        )
        return AsyncHeldSlots(self, wanted, count, options)

    async def _run_steps(
        self, steps: Callable[..., Iterator[Nap]], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        """Run a wait's steps to their end; returns what the steps return."""
        return (await self._advance(await self._call(steps, args, kwargs)))[1]

    async def _iterate(
        self, method: Callable[..., Iterator[Any]], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> AsyncIterator[Any]:
        sleeping = await self._call(method, args, kwargs)  # a Sleeping: its steps hold the naps
        while not (step := await self._advance(sleeping.steps))[0]:
            yield step[1]

    async def _advance(self, steps: Iterator[Any]) -> tuple[bool, Any]:
        """The next step of a wait or a waiting iterator that is not a :class:`Nap`: (False,
        its value), or (True, what the steps return) at their end. Each step runs in the
        engine's thread, each nap passes on the event loop."""
        while True:
            done, item = await self._call(_next, (steps,), {})
            if done or not isinstance(item, Nap):
                return done, item
            await self._nap(item.seconds)

    async def _nap(self, seconds: float) -> None:
        """Pass ``seconds`` between two checks of a wait: on the event loop, or through the
        clock's own ``sleep`` or the one given (a FrozenClock advances itself at once)."""
        if self._sleep is time.sleep:
            await asyncio.sleep(seconds)
        else:
            await self._call(_sleep_through, (self._sleep, seconds), {})

    async def iter_due_flow_runs(
        self,
        *,
        limit: int = 1,
        poll_interval: float = 1.0,
        worker: str | None = None,
        stop: threading.Event | asyncio.Event | None = None,
    ) -> AsyncIterator[FlowRun]:
        """Claim and yield due runs forever (or until ``stop`` is set), sleeping on the loop
        for ``poll_interval`` seconds when none is due; each poll also releases expired
        concurrency leases::

            async for run in orc.iter_due_flow_runs(poll_interval=5, worker="w1"):
                await execute(run)   # then propose Running, Completed, ...
        """
        interval = due_run_arguments(limit, poll_interval, worker)  # (at the first step)
        while stop is None or not stop.is_set():
            await self.expire_leases()
            runs = await self.claim_due_flow_runs(limit=limit, worker=worker)
            for run in runs:
                yield run
            if not runs:
                await _pause(interval, stop)


def _next(orc: Orchestrator, steps: Iterator[Any]) -> tuple[bool, Any]:
    """One step of a wait or a waiting iterator: (False, what it yields: a Nap, or a value),
    or (True, what it returns) at its end."""
    try:
        return False, next(steps)
    except StopIteration as done:
        return True, done.value


def _sleep_through(orc: Orchestrator, sleep: Callable[[float], object], seconds: float) -> None:
    sleep(seconds)


def _opened(orc: Orchestrator) -> None:
    """The job ``open()`` waits for: the first in the queue, so opening is over when it runs."""


def _name(fn: Callable[..., Any]) -> str:
    return getattr(fn, "__name__", "the call").strip("_")


def _what_it_did(job: Job, in_block: bool) -> str:
    if job.error is not None:
        return f"raised {type(job.error).__name__}: nothing of it was kept"
    if job.fn is _enter_transaction:
        return "opened the transaction, which was then rolled back"
    if job.fn is _exit_transaction:
        _worker, _inner, exc, outermost = job.args
        if exc is not None:
            return "rolled the transaction back"
        return "committed the transaction" if outermost else "released the nested transaction"
    status = getattr(job.value, "status", None)
    done = "returned" if status is None else f"returned {status.value}"
    if in_block:
        return f"{done}, kept only if the transaction block around it commits"
    return f"{done} (committed)"


async def _until_done(
    future: asyncio.Future[Any],
    take_back: Callable[[asyncio.CancelledError], bool] | None = None,
) -> asyncio.CancelledError | None:
    """Wait for ``future`` (a job, or the listeners' task) to end, holding back cancellations
    (the first is returned), but for one ``take_back`` takes the queued job back for: that
    one goes on at once. The future is left running (shielded)."""
    cancelled = None
    while not future.done():
        try:
            await asyncio.shield(future)
        except asyncio.CancelledError as exc:
            if future.cancelled() or (take_back is not None and take_back(exc)):
                raise
            cancelled = cancelled or exc
    return cancelled


_ListenerCall = tuple[Listener, TransitionEvent]


def _call_until_awaitable(
    listeners: Listeners, calls: Iterator[_ListenerCall]
) -> tuple[_ListenerCall, Awaitable[object]] | None:
    """Make the ``calls`` in order until one returns an awaitable: that call and its answer
    (None if none did). A listener's exception is reported, as the sync engine does."""
    for callback, event in calls:
        try:
            answer = callback(event)
        except Exception as exc:
            listeners.report(callback, event, exc)
            continue
        if inspect.isawaitable(answer):
            return (callback, event), answer
    return None


async def _await_listeners(
    listeners: Listeners,
    waiting: tuple[_ListenerCall, Awaitable[object]],
    calls: Iterator[_ListenerCall],
) -> None:
    """Await the answer ``waiting`` holds, then make the other ``calls`` in order, awaiting
    each answer that is awaitable before the next call."""
    awaited: tuple[_ListenerCall, Awaitable[object]] | None = waiting
    while awaited is not None:
        (callback, event), answer = awaited
        try:
            await answer
        except Exception as exc:
            listeners.report(callback, event, exc)
        except asyncio.CancelledError as exc:
            # this task is shielded from the caller's cancellation: unless it was cancelled
            # itself (the loop shutting down), the CancelledError is the listener's own failure
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise
            listeners.report(callback, event, exc)
        awaited = _call_until_awaitable(listeners, calls)


async def _pause(seconds: float, stop: threading.Event | asyncio.Event | None) -> None:
    if isinstance(stop, asyncio.Event):
        with suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await stop.wait()
    else:
        await asyncio.sleep(seconds)
