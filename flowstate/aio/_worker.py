"""The thread that owns an :class:`~flowstate.Orchestrator`: calls are queued to it, one at a
time in the order they came, and each answer goes back to the event loop that asked.

A job is a plain function of the orchestrator (``Orchestrator.set_flow_run_state`` and its
arguments), so the async face runs exactly the code the sync engine runs. A job still in the
queue can be abandoned (its caller was cancelled); once the thread has taken it, it runs to its
end, and the caller waits for that end (see ``AsyncOrchestrator``). Which of the two happened is
decided by the job's :class:`concurrent.futures.Future`: taken back by ``cancel()``, or started
by ``set_running_or_notify_cancel()``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import copy
import queue
import threading
from collections.abc import Callable
from contextlib import suppress
from functools import partial
from typing import TYPE_CHECKING, Any

from flowstate.errors import DatabaseError
from flowstate.listeners import TransitionEvent

if TYPE_CHECKING:
    from flowstate.orchestrator import Orchestrator

__all__ = ["Job", "Worker", "wake"]


class Job:
    """One call for the worker thread, and what became of it."""

    __slots__ = ("fn", "args", "kwargs", "ticket", "future", "value", "error", "events")

    def __init__(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        deliver: Callable[[Job], None],
    ) -> None:
        self.fn = fn
        self.args = args
        self.kwargs = kwargs
        self.ticket: concurrent.futures.Future[None] = concurrent.futures.Future()
        """Started by the worker thread, unless cancelled first (the job is abandoned)."""
        self.future = asyncio.wrap_future(self.ticket)
        """Done on the event loop once the ticket is; ``deliver`` is called first."""
        self.future.add_done_callback(lambda _: deliver(self))
        self.value: Any = None
        self.error: BaseException | None = None
        self.events: list[TransitionEvent] = []

    @property
    def done(self) -> bool:
        return self.future.done() and not self.future.cancelled()


def wake(waiter: asyncio.Future[None]) -> None:
    """Set ``waiter`` (a task waits for it) from any thread: at once in its own event loop's
    thread, else through that loop (nothing to do if the loop is closed)."""
    loop = waiter.get_loop()
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if loop is running:
        _set(waiter)
    else:
        with suppress(RuntimeError):  # a closed loop: no task is waiting any more
            loop.call_soon_threadsafe(_set, waiter)


def _set(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


def _again(error: BaseException) -> BaseException:
    """``error`` (what opening raised) to raise for one more call: a copy with its traceback
    and cause, so that raising it for call after call does not grow one traceback without end
    (each raise of the same object adds the raising frames to it)."""
    try:
        again = copy.copy(error)
    except Exception:  # an exception that cannot be made again from its arguments
        return error
    again.__cause__ = error.__cause__
    again.__suppress_context__ = error.__suppress_context__
    return again.with_traceback(error.__traceback__)


class Worker:
    """A daemon thread that opens an orchestrator, then runs queued jobs until stopped."""

    def __init__(self, open_orchestrator: Callable[[], Orchestrator]) -> None:
        self._jobs: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self.orchestrator: Orchestrator | None = None
        self.open_error: BaseException | None = None
        self.opened = threading.Event()
        self.stopped = False
        """:meth:`stop` was called: the thread closes the orchestrator after the queued jobs."""
        self.ended: concurrent.futures.Future[None] = concurrent.futures.Future()
        """Done when the thread has closed the orchestrator and has nothing left to do."""
        self._finished = False  # (set under _guard: from then on jobs run in their caller)
        self._guard = threading.Lock()
        self._blocks: list[Any] = []  # the sync transactions open in this thread, innermost last
        self._events: list[TransitionEvent] = []
        self._stop_recording: Callable[[], None] | None = None
        self._thread = threading.Thread(
            target=self._serve, args=(open_orchestrator,), name="flowstate-async", daemon=True
        )
        self._thread.start()

    # -- in the worker thread ----------------------------------------------------------------

    def _serve(self, open_orchestrator: Callable[[], Orchestrator]) -> None:
        try:
            self.orchestrator = open_orchestrator()
        except BaseException as exc:  # every call will raise it
            self.open_error = exc
        self.opened.set()
        while (work := self._jobs.get()) is not None:
            work()
            work = None  # hold nothing of the caller's while waiting for the next job
        self._close()

    def _close(self) -> None:
        """After :meth:`stop`: roll back the blocks still open and close the orchestrator, all
        in this thread (which holds their locks); then run the jobs queued meanwhile here (on
        the closed orchestrator), and let later ones run in their callers."""
        orchestrator = self.orchestrator
        try:
            if orchestrator is not None:
                closed = DatabaseError(f"the database {orchestrator.database} is closed")
                while self._blocks:
                    with suppress(Exception):
                        self._blocks.pop().__exit__(DatabaseError, closed, None)
                orchestrator.close()
        finally:
            with self._guard:
                self._finished = True
            while True:  # (nothing is queued after the flag is set: see submit)
                try:
                    work = self._jobs.get_nowait()
                except queue.Empty:
                    break
                if work is not None:
                    work()
            self.ended.set_result(None)

    def _run(self, job: Job) -> None:
        """Run the call here and now (in the worker thread, or inline once it has stopped),
        unless it was abandoned."""
        if not job.ticket.set_running_or_notify_cancel():
            return
        try:
            if self.orchestrator is None:
                assert self.open_error is not None
                raise _again(self.open_error)
            job.value = job.fn(self.orchestrator, *job.args, **job.kwargs)
        except BaseException as exc:  # the caller gets it, whatever it is
            job.error = exc
        job.events, self._events = self._events, []
        job.ticket.set_result(None)

    def _record(self, event: TransitionEvent) -> None:
        """The orchestrator's listener (it runs in this thread, after each commit)."""
        self._events.append(event)

    # -- from the event loop -----------------------------------------------------------------

    def submit(self, job: Job) -> None:
        """Queue ``job``. Once the thread has closed the orchestrator and ended, run it at once
        in the calling thread instead (on the closed orchestrator it fails at once); never
        before, so the orchestrator is only ever used by one thread at a time."""
        if self.stopped:
            with self._guard:
                if not self._finished:
                    self._jobs.put(partial(self._run, job))
                    return
            self._run(job)
        else:
            self._jobs.put(partial(self._run, job))

    def enter_block(self, orchestrator: Orchestrator) -> Any:
        """Open a ``transaction()`` block (a job: in this thread)."""
        block = orchestrator.transaction()
        block.__enter__()
        self._blocks.append(block)
        return block

    def exit_block(self, orchestrator: Orchestrator, block: Any, exc: BaseException | None) -> None:
        """End the innermost block (a job: in this thread), which the closing of the
        orchestrator may have rolled back already: then only a commit fails (DatabaseError,
        as leaving a sync block whose orchestrator was closed inside does)."""
        if self._blocks and self._blocks[-1] is block:
            self._blocks.pop()
            block.__exit__(None if exc is None else type(exc), exc, None)
        elif exc is None:
            raise DatabaseError(f"the database {orchestrator.database} is closed")

    def record_events(self, on: bool) -> None:
        """Have the jobs queued from now on collect their transition events (or stop that)."""

        def switch() -> None:
            if on and self._stop_recording is None and self.orchestrator is not None:
                self._stop_recording = self.orchestrator.add_listener(self._record)
            elif not on and self._stop_recording is not None:
                self._stop_recording()
                self._stop_recording = None

        if not self.stopped:
            self._jobs.put(switch)

    def stop(self) -> None:
        """Let the thread finish the queued jobs, close the orchestrator and end (see
        :meth:`_close`); jobs submitted after it ended run in the calling thread."""
        if not self.stopped:
            self.stopped = True
            self._jobs.put(None)

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)
