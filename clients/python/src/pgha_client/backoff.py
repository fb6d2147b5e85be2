"""Capped exponential backoff with full jitter (Python twin of ``Backoff.php``)."""

from __future__ import annotations

import math
import random as _random
from collections.abc import Callable


class Backoff:
    """Capped exponential backoff with full jitter: the delay before retry n (n = 1, 2, ...)
    is uniform in [0, min(cap, base * 2^(n-1))], which spreads the reconnect storm of many
    clients after a failover."""

    def __init__(self, base: float, cap: float, random: Callable[[], float] | None = None):
        if not (base > 0) or not (cap >= base) or not math.isfinite(cap):
            raise ValueError(f"backoff needs 0 < base <= cap, got base={base} cap={cap}")
        self.base = base
        self.cap = cap
        self.random = random or _random.random

    def ceiling(self, retry: int) -> float:
        return min(self.cap, self.base * 2.0 ** max(0, min(retry - 1, 1023)))

    def delay(self, retry: int) -> float:
        r = float(self.random())
        r = 0.0 if math.isnan(r) else max(0.0, min(1.0, r))
        return r * self.ceiling(retry)
