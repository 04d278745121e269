"""What Prefect 3.9.1's client stores for typed run input, replayed through flowstate.

``tests/conformance/vectors/run-input/prefect-3.9.1-run-input.jsonl`` (see the README there) holds,
per vector, the models' source, what was handed to ``wait_for_input`` / ``send_input``, and the
exact texts Prefect's client stored. Pausing (or sending) through flowstate must store the same
texts, character for character, on every backend.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from flowstate import Orchestrator, RunInput, SetStateStatus
from flowstate.states import Running

VECTOR_FILE = (
    Path(__file__).resolve().parent
    / "conformance"
    / "vectors"
    / "run-input"
    / "prefect-3.9.1-run-input.jsonl"
)
VECTORS = [json.loads(line) for line in VECTOR_FILE.read_text().splitlines() if line.strip()]


def test_all_fourteen_vectors_are_there() -> None:
    kinds = [vector["kind"] for vector in VECTORS]
    assert len(VECTORS) == 14
    assert kinds.count("wait_for_input") == 10 and kinds.count("send_input") == 4


def _namespace(vector: dict[str, Any]) -> dict[str, Any]:
    """The vector's models, defined with flowstate's RunInput (no ``from __future__``)."""
    namespace: dict[str, Any] = {"RunInput": RunInput}
    exec(compile(vector["source"], vector["id"], "exec", dont_inherit=True), namespace)
    return namespace


@pytest.mark.parametrize("vector", VECTORS, ids=[v["id"] for v in VECTORS])
def test_flowstate_stores_what_prefects_client_stores(vector: dict[str, Any], backend) -> None:
    namespace = _namespace(vector)
    given = eval(vector["given"], namespace)
    database = backend.new_database(memory=True)
    try:
        with Orchestrator(database) as orc:
            run = orc.create_flow_run(state=Running())
            if vector["kind"] == "wait_for_input":
                result = orc.pause_flow_run(run.id, key=vector["pause_key"], wait_for_input=given)
                assert result.status is SetStateStatus.ACCEPT
                assert result.state.state_details.run_input_keyset == vector["keyset"]
                for key in vector["keyset"].values():
                    expected = vector["stored"].get(key)
                    if expected is None:
                        with pytest.raises(KeyError):
                            orc.read_flow_run_input(run.id, key)
                    else:
                        assert orc.read_flow_run_input(run.id, key) == expected
            else:
                value = eval(vector["value"], namespace)
                key = orc.send_input(run.id, value)
                prefix = vector["key_prefix"] + "-"
                assert key.startswith(prefix)
                assert len(key) == len(prefix) + 36  # a UUID follows the prefix
                assert orc.read_flow_run_input(run.id, key) == vector["stored_value"]
                (received,) = orc.receive_input(run.id, given, timeout=0)
                if isinstance(value, RunInput):  # (the received one also carries metadata)
                    assert received.model_dump() == value.model_dump()
                    assert received.metadata.key == key
                else:
                    assert received == value
    finally:
        backend.drop(database)
