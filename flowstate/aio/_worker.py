"""The thread that owns an :class:`~flowstate.Orchestrator`: calls are queued to it, one at a
time in the order they came, and each answer goes back to the event loop that asked.

A job is a plain function of the orchestrator (``Orchestrator.set_flow_run_state`` and its
arguments), so the async face runs exactly the code the sync engine runs. A job still in the
queue can be abandoned (its caller was cancelled); once the thread has taken it, it runs to its
end, and the caller waits for that end (see ``AsyncOrchestrator``).
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from flowstate.listeners import TransitionEvent

if TYPE_CHECKING:
    from flowstate.orchestrator import Orchestrator

__all__ = ["Job", "Worker"]

QUEUED, RUNNING, DONE, ABANDONED = "queued", "running", "done", "abandoned"


class Job:
    """One call for the worker thread, and what became of it."""

    __slots__ = (
        "fn", "args", "kwargs", "loop", "deliver", "future", "state", "value", "error", "events",
    )

    def __init__(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        loop: asyncio.AbstractEventLoop | None,
        deliver: Callable[[Job], None] | None,
    ) -> None:
        self.fn = fn
        self.args = args
        self.kwargs = kwargs
        self.loop = loop
        self.deliver = deliver
        """Called on ``loop`` once the job is done (a control job has neither)."""
        self.future: asyncio.Future[None] | None = None if loop is None else loop.create_future()
        self.state = QUEUED
        self.value: Any = None
        self.error: BaseException | None = None
        self.events: list[TransitionEvent] = []

    @property
    def done(self) -> bool:
        return self.state is DONE

    def run(self, orchestrator: Orchestrator | None, open_error: BaseException | None) -> None:
        """Run the call here and now (in the worker thread, or inline once it has stopped)."""
        try:
            if orchestrator is None:
                assert open_error is not None
                raise open_error
            self.value = self.fn(orchestrator, *self.args, **self.kwargs)
        except BaseException as exc:  # the caller gets it, whatever it is
            self.error = exc

    def wake(self) -> None:
        """On the loop: the job is done; wake whoever waits for it."""
        self.state = DONE
        if self.deliver is not None:
            self.deliver(self)
        future = self.future
        if future is not None and not future.done():
            future.set_result(None)


class Worker:
    """A daemon thread that opens an orchestrator, then runs queued jobs until stopped."""

    def __init__(self, open_orchestrator: Callable[[], Orchestrator]) -> None:
        self._jobs: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._lock = threading.Lock()  # a job moves QUEUED -> RUNNING or -> ABANDONED once
        self.orchestrator: Orchestrator | None = None
        self.open_error: BaseException | None = None
        self.opened = threading.Event()
        self.stopped = False
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
        jobs, lock = self._jobs, self._lock
        while True:
            job = jobs.get()
            if job is None:
                break
            with lock:
                if job.state is ABANDONED:
                    continue
                job.state = RUNNING
            job.run(self.orchestrator, self.open_error)
            if self._events:
                job.events, self._events = self._events, []
            loop = job.loop
            if loop is not None:
                try:
                    loop.call_soon_threadsafe(job.wake)
                except RuntimeError:  # the loop was closed: nobody is waiting any more
                    pass
            job = loop = None  # hold nothing of the caller's while waiting for the next job
        if self.orchestrator is not None:
            self.orchestrator.close()

    def _record(self, event: TransitionEvent) -> None:
        """The orchestrator's listener (it runs in this thread, after each commit)."""
        self._events.append(event)

    # -- from the event loop -----------------------------------------------------------------

    def submit(self, job: Job) -> None:
        """Queue ``job``; after :meth:`stop`, run it at once in the calling thread instead."""
        if self.stopped:
            job.run(self.orchestrator, self.open_error)
            job.wake()
            return
        self._jobs.put(job)

    def abandon(self, job: Job) -> bool:
        """Take back a job that has not started; False if it has (it will run to its end)."""
        with self._lock:
            if job.state is QUEUED:
                job.state = ABANDONED
                return True
            return False

    def record_events(self, on: bool) -> None:
        """Have the jobs queued from now on collect their transition events (or stop that)."""

        def switch(orchestrator: Orchestrator) -> None:
            if on and self._stop_recording is None:
                self._stop_recording = orchestrator.add_listener(self._record)
            elif not on and self._stop_recording is not None:
                self._stop_recording()
                self._stop_recording = None

        self.submit(Job(switch, (), {}, None, None))

    def stop(self) -> None:
        """Let the thread finish the queued jobs, close the orchestrator and end; later jobs
        run in the calling thread (on a closed orchestrator they fail at once)."""
        if not self.stopped:
            self.stopped = True
            self._jobs.put(None)

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)
