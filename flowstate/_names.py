"""Readable generated run names, like Prefect's ``adjective-animal`` slugs."""

from __future__ import annotations

import secrets

_ADJECTIVES = (
    "amber", "bold", "brisk", "calm", "clever", "cosmic", "daring", "eager", "gentle", "golden",
    "hidden", "jolly", "keen", "lively", "lucky", "mellow", "nimble", "quiet", "rapid", "silver",
    "steady", "sunny", "swift", "tidy", "vivid", "witty",
)
_ANIMALS = (
    "badger", "beaver", "bison", "crane", "falcon", "ferret", "gecko", "heron", "ibis", "jackal",
    "koala", "lemur", "lynx", "marten", "newt", "otter", "panda", "puffin", "quail", "raven",
    "salmon", "tapir", "toucan", "walrus", "wombat", "zebra",
)


def generate_run_name() -> str:
    """A random ``adjective-animal`` name."""
    return f"{secrets.choice(_ADJECTIVES)}-{secrets.choice(_ANIMALS)}"
