"""Bounded retries with exponential backoff and jitter, for requests a retry can help (see errors.py).

Written here rather than taken from tenacity so that ``pip install sat-triton`` stays tritonclient plus
numpy; gRPC's own retry service config would cover gRPC only, and the HTTP path needs the same rule.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass
from typing import Awaitable, Callable, Iterator, TypeVar

from .errors import RETRYABLE, SaTError, classify, translate

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry a request the server could not take.

    Delays grow ``initial_backoff * multiplier**n`` up to ``max_backoff``; each is shortened by a random
    fraction up to ``jitter`` (1.0: anywhere in [0, delay], "full jitter"), so clients that failed together
    do not come back together. No retry starts after ``max_elapsed`` seconds from the first attempt, and
    no more than ``max_attempts`` attempts are made in all (1: no retries).
    """

    max_attempts: int = 5
    initial_backoff: float = 0.25
    max_backoff: float = 4.0
    multiplier: float = 2.0
    jitter: float = 0.5
    max_elapsed: float = 30.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {self.max_attempts}")
        if self.initial_backoff < 0 or self.max_backoff < 0 or self.max_elapsed < 0:
            raise ValueError("initial_backoff, max_backoff and max_elapsed must be >= 0")
        if self.multiplier < 1:
            raise ValueError(f"multiplier must be >= 1, got {self.multiplier}")
        if not 0 <= self.jitter <= 1:
            raise ValueError(f"jitter must be within [0, 1], got {self.jitter}")

    def delays(self, rng: random.Random | None = None) -> Iterator[float]:
        """The pause before each retry (``max_attempts - 1`` of them)."""
        draw = rng.random if rng is not None else random.random
        delay = self.initial_backoff
        for _ in range(self.max_attempts - 1):
            yield min(delay, self.max_backoff) * (1.0 - self.jitter * draw())
            delay *= self.multiplier


NO_RETRY = RetryPolicy(max_attempts=1)


def _plan(policy: RetryPolicy | None) -> RetryPolicy:
    return NO_RETRY if policy is None else policy


def _pause(policy: RetryPolicy, delays: Iterator[float], start: float, kind: str) -> float | None:
    """The pause before the next attempt, or None when this failure is final."""
    pause = next(delays, None) if kind in RETRYABLE else None
    if pause is None or time.monotonic() - start + pause > policy.max_elapsed:
        return None
    return pause


def call_with_retry(attempt: Callable[[], T], policy: RetryPolicy | None) -> T:
    """Run ``attempt`` until it succeeds, fails for good, or the policy runs out; raise a SaTError."""
    policy = _plan(policy)
    start, delays, attempts = time.monotonic(), policy.delays(), 0
    while True:
        attempts += 1
        try:
            return attempt()
        except Exception as exc:  # tritonclient's, grpc's, gevent's and the socket's errors, or our own
            kind = classify(exc)
            pause = _pause(policy, delays, start, kind)
            if pause is None:
                raise translate(exc, attempts, kind) from (None if isinstance(exc, SaTError) else exc)
        time.sleep(pause)


async def acall_with_retry(attempt: Callable[[], Awaitable[T]], policy: RetryPolicy | None) -> T:
    """``call_with_retry`` for coroutines; cancelling the caller cancels the attempt in flight."""
    policy = _plan(policy)
    start, delays, attempts = time.monotonic(), policy.delays(), 0
    while True:
        attempts += 1
        try:
            return await attempt()
        except Exception as exc:  # asyncio.CancelledError is a BaseException: it passes through
            kind = classify(exc)
            pause = _pause(policy, delays, start, kind)
            if pause is None:
                raise translate(exc, attempts, kind) from (None if isinstance(exc, SaTError) else exc)
        await asyncio.sleep(pause)
