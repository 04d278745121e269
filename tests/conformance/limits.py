"""The concurrency-limit part of the conformance replay: the steps, names and expectations that
``prefect-3.9.1-concurrency.jsonl`` adds to the main format (the "Concurrency limits" section of
the vectors' README).

:class:`LimitSteps` is mixed into ``replay.VectorReplay``. It performs the limit, lease and
deployment ops through the proposed flowstate API (a method flowstate does not have yet makes
its step fail, as any other exception does), maps their outcomes to the HTTP status codes
Prefect's routes answered, and reads ``limits_after`` after every step. Names and ids are
normalised as the vectors write them: ``<deployment:NAME>`` for a deployment's id inside a limit
name, ``<lease:N>`` for lease ids numbered in the order they first appear in the results,
``<run:NAME>`` in holder lists.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any
from uuid import UUID

__all__ = [
    "LIMIT_OPS",
    "LimitSteps",
    "compare_op",
    "limit_names_of",
]

_DEPLOYMENT_PLACEHOLDER_RE = re.compile(r"<deployment:([A-Za-z0-9_\-]+)>")

LIMIT_OPS = (
    "create_concurrency_limit",
    "read_concurrency_limit",
    "reset_concurrency_limit",
    "delete_concurrency_limit",
    "create_global_concurrency_limit",
    "read_global_concurrency_limit",
    "update_global_concurrency_limit",
    "delete_global_concurrency_limit",
    "increment_concurrency_slots",
    "decrement_concurrency_slots",
    "increment_concurrency_slots_with_lease",
    "renew_concurrency_lease",
    "release_concurrency_lease",
    "create_deployment",
    "update_deployment",
)
"""The ops of the concurrency format, each performed by the :class:`LimitSteps` method of the
same name."""

GLOBAL_FIELDS = ("name", "limit", "active", "active_slots", "slot_decay_per_second")
"""The fields of a global limit the vectors record."""

UPDATE_FIELDS = ("limit", "active", "active_slots", "slot_decay_per_second")
CREATE_OPTIONS = ("active", "active_slots", "slot_decay_per_second")
DEPLOYMENT_OPTIONS = ("concurrency_limit", "collision_strategy", "grace_period_seconds")


def limit_names_of(vector: dict[str, Any]) -> list[str]:
    """Every limit name the vector uses, as the vector writes it (``tag:a``,
    ``deployment:<deployment:d1>``): the keys of its ``limits_after`` and the names and tags of
    its steps (setup included). ``limits_after`` is read for these."""
    found: dict[str, None] = {}
    setup = vector.get("setup") or {}
    for step in [*(setup.get("before") or []), *(vector.get("steps") or [])]:
        if "tag" in step:
            found[f"tag:{step['tag']}"] = None
        if isinstance(step.get("name"), str) and step.get("op") != "create_deployment":
            found[step["name"]] = None
        for name in step.get("names") or []:
            found[name] = None
        if isinstance(step.get("global_concurrency_limit"), str):
            found[step["global_concurrency_limit"]] = None
    for expected in vector.get("expect") or []:
        if isinstance(expected, dict):
            for name in expected.get("limits_after") or {}:
                found[name] = None
    return list(found)


class LimitSteps:
    """The concurrency ops of a vector replay (mixed into ``VectorReplay``, whose ``orc``,
    ``flowstate``, ``runs`` and ``reference`` it uses)."""

    orc: Any
    flowstate: Any
    vector: dict[str, Any]
    reference: Callable[[Any], str | None]

    def init_limits(self) -> None:
        """The replay's limit bookkeeping (called by ``VectorReplay.__init__``)."""
        self.deployments: dict[str, UUID] = {}
        """Deployment name (of ``create_deployment``) -> its id."""
        self.lease_as: dict[str, Any] = {}
        """Label of an ``as`` -> the lease id that step got."""
        self.lease_numbers: dict[str, int] = {}
        """Lease id (text) -> N of ``<lease:N>``, in order of first appearance."""
        self.limit_names = limit_names_of(self.vector)

    # -- names and ids ---------------------------------------------------------------------------

    def real_name(self, name: str) -> str | None:
        """A limit name as the vector writes it, with real deployment ids (None: it names a
        deployment that does not exist)."""
        missing = False

        def replace(match: re.Match[str]) -> str:
            nonlocal missing
            deployment_id = self.deployments.get(match.group(1))
            if deployment_id is None:
                missing = True
                return match.group(0)
            return str(deployment_id)

        real = _DEPLOYMENT_PLACEHOLDER_RE.sub(replace, name)
        return None if missing else real

    def vector_name(self, name: str) -> str:
        """A real limit name as the vector writes it (deployment ids as placeholders)."""
        for deployment, deployment_id in self.deployments.items():
            name = name.replace(str(deployment_id), f"<deployment:{deployment}>")
        return name

    def lease_label(self, lease_id: Any) -> str | None:
        """``<lease:N>`` for a lease id (numbered on first sight), None for None."""
        if lease_id is None:
            return None
        key = str(lease_id)
        if key not in self.lease_numbers:
            self.lease_numbers[key] = len(self.lease_numbers) + 1
        return f"<lease:{self.lease_numbers[key]}>"

    def run_id_of(self, name: str) -> UUID:
        """The id of a setup run named in a step."""
        return self.runs[name].id  # type: ignore[attr-defined, no-any-return]

    def step_lease(self, spec: dict[str, Any]) -> Any:
        """The lease a step means: ``{"name": LABEL}`` or ``{"run": NAME}`` (the lease id on
        that flow run's current state)."""
        if "name" in spec:
            if spec["name"] not in self.lease_as:
                raise KeyError(f"no lease was stored as {spec['name']!r}")
            return self.lease_as[spec["name"]]
        state = self.orc.read_flow_run(self.run_id_of(spec["run"])).state
        lease_id = None if state is None else state.state_details.deployment_concurrency_lease_id
        if lease_id is None:
            raise KeyError(f"run {spec['run']!r} holds no deployment concurrency lease")
        return lease_id

    def deployment_id_for(self, name: str) -> UUID:
        """The id of a deployment made by ``create_deployment`` (setup or step)."""
        if name not in self.deployments:
            raise KeyError(f"no deployment named {name!r} was created")
        return self.deployments[name]

    # -- what the API returned, as the vectors record it ------------------------------------------

    def global_limit(self, limit: Any) -> dict[str, Any] | None:
        if limit is None:
            return None
        shown = {field: getattr(limit, field) for field in GLOBAL_FIELDS}
        shown["name"] = self.vector_name(shown["name"])
        return shown

    def holders(self, run_ids: Iterable[Any]) -> list[str | None]:
        return sorted((self.reference(run_id) for run_id in run_ids), key=str)

    def tag_limit(self, limit: Any) -> dict[str, Any]:
        return {
            "tag": limit.tag,
            "concurrency_limit": limit.concurrency_limit,
            "active_slots": self.holders(limit.active_slots),
        }

    def limits_after(self) -> dict[str, Any]:
        """Each limit the vector uses that exists now: its ``active_slots``, and for ``tag:``
        limits the holders the V1 view lists."""
        not_found = self.flowstate.ObjectNotFound
        found: dict[str, Any] = {}
        for name in self.limit_names:
            real = self.real_name(name)
            if real is None:
                continue
            try:
                limit = self.orc.read_global_concurrency_limit(real)
            except not_found:
                continue
            entry: dict[str, Any] = {"active_slots": limit.active_slots}
            if name.startswith("tag:"):
                tag_view = self.orc.read_concurrency_limit(name[len("tag:") :])
                entry["holders"] = self.holders(tag_view.active_slots)
            found[name] = entry
        return found

    def status_of(self, exc: BaseException, *, not_found: int = 404) -> int | None:
        """The HTTP status Prefect answers for a flowstate error (None: not one of those)."""
        fs = self.flowstate
        if isinstance(exc, fs.ObjectNotFound):
            return not_found
        if isinstance(exc, fs.ObjectAlreadyExists):
            return 409
        if isinstance(exc, fs.ConcurrencyLimitReached):
            return 423
        if isinstance(exc, fs.InvalidState):
            return 422
        return None

    def attempt(
        self, call: Callable[[], Any], *, not_found: int = 404
    ) -> tuple[Any, int | None, BaseException | None]:
        """(result, None, None) on success, (None, status, error) for a mapped flowstate error;
        any other exception propagates."""
        try:
            return call(), None, None
        except self.flowstate.FlowstateError as exc:
            status = self.status_of(exc, not_found=not_found)
            if status is None:
                raise
            return None, status, exc

    # -- tag limits ----------------------------------------------------------------------------

    def create_concurrency_limit(self, step: dict[str, Any], run: Any = None) -> dict[str, Any]:
        tag = step["tag"]
        existed = self.attempt(lambda: self.orc.read_concurrency_limit(tag))[1] is None
        made, status, _ = self.attempt(lambda: self.orc.create_concurrency_limit(tag, step["limit"]))
        if status is not None:
            return {"http_status": status, "limit": None}
        return {"http_status": 200 if existed else 201, "limit": self.tag_limit(made)}

    def read_concurrency_limit(self, step: dict[str, Any], run: Any = None) -> dict[str, Any]:
        found, status, _ = self.attempt(lambda: self.orc.read_concurrency_limit(step["tag"]))
        if status is not None:
            return {"http_status": status, "limit": None}
        return {"http_status": 200, "limit": self.tag_limit(found)}

    def reset_concurrency_limit(self, step: dict[str, Any], run: Any = None) -> dict[str, Any]:
        override = step.get("slot_override")
        ids = None if override is None else [self.run_id_of(name) for name in override]
        _, status, _ = self.attempt(
            lambda: self.orc.reset_concurrency_limit(step["tag"], slot_override=ids)
        )
        return {"http_status": status or 200}

    def delete_concurrency_limit(self, step: dict[str, Any], run: Any = None) -> dict[str, Any]:
        _, status, _ = self.attempt(lambda: self.orc.delete_concurrency_limit(step["tag"]))
        return {"http_status": status or 200}

    # -- global limits -------------------------------------------------------------------------

    def _name(self, step: dict[str, Any]) -> str:
        real = self.real_name(step["name"])
        if real is None:
            raise KeyError(f"{step['name']!r} names a deployment that was not created")
        return real

    def _names(self, step: dict[str, Any]) -> list[str]:
        names = [self.real_name(name) for name in step["names"]]
        if any(name is None for name in names):
            raise KeyError(f"{step['names']!r} names a deployment that was not created")
        return names  # type: ignore[return-value]

    def create_global_concurrency_limit(
        self, step: dict[str, Any], run: Any = None
    ) -> dict[str, Any]:
        options = {key: step[key] for key in CREATE_OPTIONS if key in step}
        made, status, _ = self.attempt(
            lambda: self.orc.create_global_concurrency_limit(
                self._name(step), step["limit"], **options
            )
        )
        return {"http_status": status or 201, "limit": self.global_limit(made)}

    def read_global_concurrency_limit(
        self, step: dict[str, Any], run: Any = None
    ) -> dict[str, Any]:
        found, status, _ = self.attempt(
            lambda: self.orc.read_global_concurrency_limit(self._name(step))
        )
        return {"http_status": status or 200, "limit": self.global_limit(found)}

    def update_global_concurrency_limit(
        self, step: dict[str, Any], run: Any = None
    ) -> dict[str, Any]:
        fields = {key: step[key] for key in UPDATE_FIELDS if key in step}
        _, status, _ = self.attempt(
            lambda: self.orc.update_global_concurrency_limit(self._name(step), **fields)
        )
        return {"http_status": status or 204}

    def delete_global_concurrency_limit(
        self, step: dict[str, Any], run: Any = None
    ) -> dict[str, Any]:
        _, status, _ = self.attempt(
            lambda: self.orc.delete_global_concurrency_limit(self._name(step))
        )
        return {"http_status": status or 204}

    # -- slots and leases ----------------------------------------------------------------------

    def _refused(self, status: int, exc: BaseException | None) -> dict[str, Any]:
        outcome: dict[str, Any] = {
            "http_status": status,
            "limits": None,
            "detail": str(exc) if status == 422 else None,
        }
        if status == 423:
            outcome["retry_after_set"] = getattr(exc, "retry_after", None) is not None
        return outcome

    def increment_concurrency_slots(self, step: dict[str, Any], run: Any = None) -> dict[str, Any]:
        options = {"mode": step["mode"]} if "mode" in step else {}
        names, status, exc = self.attempt(
            lambda: self.orc.increment_concurrency_slots(
                self._names(step), step["slots"], **options
            )
        )
        if status is not None:
            return self._refused(status, exc)
        return {"http_status": 200, "limits": sorted(map(self.vector_name, names)), "detail": None}

    def decrement_concurrency_slots(self, step: dict[str, Any], run: Any = None) -> dict[str, Any]:
        options = {"occupancy_seconds": step["occupancy_seconds"]} if "occupancy_seconds" in step else {}
        names, status, exc = self.attempt(
            lambda: self.orc.decrement_concurrency_slots(
                self._names(step), step["slots"], **options
            )
        )
        if status is not None:
            return self._refused(status, exc)
        return {"http_status": 200, "limits": sorted(map(self.vector_name, names))}

    def increment_concurrency_slots_with_lease(
        self, step: dict[str, Any], run: Any = None
    ) -> dict[str, Any]:
        options: dict[str, Any] = {"lease_duration": step.get("lease_duration", 300)}
        if "mode" in step:
            options["mode"] = step["mode"]
        holder = step.get("holder")
        if holder is not None:
            options["holder"] = {"type": holder["type"], "id": self.run_id_of(holder["run"])}
        lease, status, exc = self.attempt(
            lambda: self.orc.increment_concurrency_slots_with_lease(
                self._names(step), step["slots"], **options
            )
        )
        if status is not None:
            return {**self._refused(status, exc), "lease_id": None}
        if "as" in step:
            self.lease_as[step["as"]] = lease.lease_id
        return {
            "http_status": 200,
            "limits": sorted(map(self.vector_name, lease.limits)),
            "lease_id": self.lease_label(lease.lease_id),
            "detail": None,
        }

    def renew_concurrency_lease(self, step: dict[str, Any], run: Any = None) -> dict[str, Any]:
        lease_id = self.step_lease(step["lease"])
        duration = step.get("lease_duration", 300)
        _, status, _ = self.attempt(
            lambda: self.orc.renew_concurrency_lease(lease_id, duration), not_found=410
        )
        return {"http_status": status or 204}

    def release_concurrency_lease(self, step: dict[str, Any], run: Any = None) -> dict[str, Any]:
        lease_id = self.step_lease(step["lease"])
        _, status, _ = self.attempt(lambda: self.orc.release_concurrency_lease(lease_id))
        return {"http_status": status or 204}

    # -- deployments ---------------------------------------------------------------------------

    def create_deployment(self, step: dict[str, Any], run: Any = None) -> dict[str, Any]:
        options = {key: step[key] for key in DEPLOYMENT_OPTIONS if key in step}
        if step.get("global_concurrency_limit") is not None:
            limit = self.orc.read_global_concurrency_limit(
                self._name({"name": step["global_concurrency_limit"]})
            )
            options["global_concurrency_limit_id"] = limit.id
        made, status, _ = self.attempt(lambda: self.orc.create_deployment(step["name"], **options))
        if status is not None:  # (Prefect's 422 records no deployment, so no limit either)
            return {"http_status": status}
        self.deployments[step["name"]] = made.id
        return {
            "http_status": 201,
            "global_concurrency_limit": self.global_limit(made.global_concurrency_limit),
        }

    def update_deployment(self, step: dict[str, Any], run: Any = None) -> dict[str, Any]:
        deployment_id = self.deployment_id_for(step["deployment"])
        _, status, _ = self.attempt(
            lambda: self.orc.update_deployment(
                deployment_id, concurrency_limit=step["concurrency_limit"]
            )
        )
        return {"http_status": status or 204}

    def limit_handlers(self) -> dict[str, Callable[[dict[str, Any], Any], dict[str, Any]]]:
        """op -> the method performing it."""
        return {op: getattr(self, op) for op in LIMIT_OPS}


def compare_op(check: Any, expected: dict[str, Any], actual: dict[str, Any]) -> None:
    """Compare the outcome of a run-input, limit, lease or deployment op: every recorded field
    exactly, except ``detail``, compared only when the vector recorded a message."""
    for key in sorted(set(expected) | set(actual)):
        want = expected.get(key, check.missing)
        got = actual.get(key, check.missing)
        if key == "detail" and not isinstance(want, str):
            continue
        check.exact(key, want, got)
