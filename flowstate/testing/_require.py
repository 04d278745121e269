"""The one place that says what to install when hypothesis is missing."""

from __future__ import annotations

INSTALL_HINT = (
    "flowstate.testing needs hypothesis; install it with: pip install 'flowstate[testing]'"
)


def require_hypothesis() -> None:
    """Raise a clear ImportError if hypothesis cannot be imported."""
    try:
        import hypothesis  # noqa: F401
    except ImportError as exc:
        raise ImportError(INSTALL_HINT, name="hypothesis") from exc
