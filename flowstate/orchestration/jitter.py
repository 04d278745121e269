"""Retry jitter: a clamped exponential ("Poisson interval") draw around a base delay.

Delays are drawn from an exponential distribution whose mean is the base delay, truncated to
``[lower, base * (1 + factor)]``. The lower bound is chosen so that the truncated distribution
keeps (approximately) the base delay as its mean, which is how Prefect spreads retries of many
failing tasks without changing their average delay.
"""

from __future__ import annotations

import math
from collections.abc import Callable

__all__ = ["jitter_bounds", "jittered_delay"]


def _lower_multiple(upper_multiple: float) -> float:
    # For an exponential with mean 1 truncated above at u, the lower cut l = log2(2^u / (2^u - 1))
    # keeps the mean close to 1; past u ~ 50 the cut is 0 within float precision.
    if upper_multiple >= 50:
        return 0.0
    power = 2.0**upper_multiple
    return math.log2(max(power / (power - 1), 1e-10))


def jitter_bounds(base: float, factor: float) -> tuple[float, float]:
    """The smallest and largest delay a jittered draw around ``base`` can give."""
    upper_multiple = 1 + factor
    return max(0.0, base * _lower_multiple(upper_multiple)), base * upper_multiple


def jittered_delay(base: float, factor: float, uniform: Callable[[float, float], float]) -> float:
    """A delay near ``base`` spread by ``factor``, drawn with ``uniform(low, high)``."""
    if factor <= 0:
        raise ValueError("`clamping_factor` must be >= 0.")
    lower, upper = jitter_bounds(base, factor)

    def cdf(x: float) -> float:
        return 1 - math.exp(-x / base)

    u = uniform(cdf(lower), cdf(upper))
    return -math.log(max(1 - u, 1e-10)) * base
