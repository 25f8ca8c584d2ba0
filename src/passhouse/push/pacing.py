"""Pacing the sender: each push makes a device call back at least twice, so an unpaced
fan-out to a million devices would be a flood on our own web tier."""

from __future__ import annotations

import asyncio
import time


class RateLimiter:
    """A reservation token bucket (GCRA): `reserve()` books the next slot and says how
    long to wait for it, so many concurrent senders queue up fairly in O(1)."""

    def __init__(self, rate: float, *, burst_seconds: float = 0.05) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self._interval = 1.0 / rate
        # A short burst lets a single push after an idle spell leave at once.
        self._tolerance = max(0.0, rate * burst_seconds - 1) * self._interval
        self._tat = 0.0

    def reserve(self) -> float:
        now = time.monotonic()
        tat = max(self._tat, now)
        self._tat = tat + self._interval
        return max(0.0, tat - self._tolerance - now)


class Pacer:
    """An overall rate and a rate per pass type for one worker process (0 = unlimited)."""

    def __init__(self, overall: float, per_pass_type: float) -> None:
        self._overall = RateLimiter(overall) if overall > 0 else None
        self._per_pass_type_rate = per_pass_type
        self._per_pass_type: dict[str, RateLimiter] = {}

    @property
    def slowest_rate(self) -> float:
        rates = [r for r in (self._per_pass_type_rate, self._overall_rate) if r > 0]
        return min(rates, default=0.0)

    @property
    def _overall_rate(self) -> float:
        return 1.0 / self._overall._interval if self._overall else 0.0

    async def acquire(self, pass_type_id: str) -> None:
        delay = self._overall.reserve() if self._overall else 0.0
        if self._per_pass_type_rate > 0:
            limiter = self._per_pass_type.get(pass_type_id)
            if limiter is None:
                limiter = self._per_pass_type[pass_type_id] = RateLimiter(self._per_pass_type_rate)
            delay = max(delay, limiter.reserve())
        if delay > 0:
            await asyncio.sleep(delay)
