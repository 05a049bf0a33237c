"""What happened to each request of an open-loop run, and the numbers an operator reads from it.

Pure (no client, no server): :class:`Outcome` is one request's record, :func:`classify` turns a
client exception into its status, :func:`arrival_times` is the schedule and :func:`summarise` a run's
throughput, percentiles and refusals. :mod:`bench.load` sends the requests and re-exports these.
"""

from __future__ import annotations

import math
import socket
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

OK, REFUSED, TIMEOUT, UNREACHABLE, WRONG, ERROR = "ok", "refused", "timeout", "unreachable", "wrong", "error"
STATUSES = (OK, REFUSED, TIMEOUT, UNREACHABLE, WRONG, ERROR)
# How a refusal looks: Triton's queue policy answers "Exceeds maximum queue size" / "Request timeout
# expired" with UNAVAILABLE, which gRPC sends as StatusCode.UNAVAILABLE and HTTP as 503; 429 and
# RESOURCE_EXHAUSTED are what a proxy or rate limiter in front of it sends.
REFUSAL_CODES = ("StatusCode.UNAVAILABLE", "StatusCode.RESOURCE_EXHAUSTED", "503", "429")
TIMEOUT_CODES = ("StatusCode.DEADLINE_EXCEEDED",)
# UNAVAILABLE is also what gRPC says when there is no server to talk to: that is not a refusal
UNREACHABLE_PHRASES = ("failed to connect", "connection refused", "connect failed", "socket closed",
                       "connection reset", "broken pipe", "unreachable", "name resolution")


@dataclass(frozen=True)
class Outcome:
    """One request of an open-loop run. Times are seconds after the run's start."""

    scheduled_s: float  # when it was due (its arrival time)
    sent_s: float  # when it was handed to the client library: later than due when the client fell behind
    latency_ms: float  # from sent_s until its response or error arrived
    status: str  # one of STATUSES
    detail: str = ""  # the error (first 300 characters) unless ok

    @property
    def response_ms(self) -> float:
        """From when it was due until it was answered: what a caller arriving at ``scheduled_s`` waited."""
        return (self.sent_s - self.scheduled_s) * 1000.0 + self.latency_ms

    @property
    def done_s(self) -> float:
        return self.sent_s + self.latency_ms / 1000.0


def classify(error: BaseException) -> tuple[str, str]:
    """(status, detail) of a failed request: refused (the server's queue policy or a rate limiter said
    no), timeout (the client's deadline passed), unreachable (no server answered), or error."""
    code = ""
    status = getattr(error, "status", None)
    if callable(status):
        code = str(status() or "")
    message = getattr(error, "message", None)
    text = str(message() if callable(message) else error)
    detail = f"{code} {text}".strip()[:300]
    lowered = text.lower()
    if isinstance(error, (TimeoutError, socket.timeout)) or code in TIMEOUT_CODES or "deadline exceeded" in lowered:
        return TIMEOUT, detail
    if isinstance(error, ConnectionError) or any(p in lowered for p in UNREACHABLE_PHRASES):
        return UNREACHABLE, detail
    if code in REFUSAL_CODES:
        return REFUSED, detail
    return ERROR, detail


def arrival_times(rate: float, duration_s: float, arrivals: str = "poisson", seed: int = 0) -> np.ndarray:
    """When each request of a run at ``rate`` requests/s over ``duration_s`` seconds is due: evenly
    spaced (``uniform``) or a Poisson process (``poisson``: exponential gaps, how independent users
    arrive, and what makes queues form below capacity)."""
    if rate <= 0 or duration_s <= 0:
        return np.zeros(0)
    if arrivals == "uniform":
        return np.arange(0.0, duration_s, 1.0 / rate)
    if arrivals != "poisson":
        raise ValueError(f"arrivals must be 'poisson' or 'uniform', got {arrivals!r}")
    rng = np.random.default_rng(seed)
    n = int(rate * duration_s * 1.5 + 10 * math.sqrt(rate * duration_s) + 10)
    times = np.cumsum(rng.exponential(1.0 / rate, n))
    return times[times < duration_s]


def percentile(values: Sequence[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if len(values) >= 2 else None


def summarise(outcomes: Sequence[Outcome], duration_s: float, offered_rate: float) -> dict:
    """One open-loop run in the numbers an operator reads: requests sent and how each ended,
    throughput (ok answers per second from the start until the last of them, so a backlog that the
    server clears after the sending window counts at the rate it was cleared), response-time
    percentiles of the ok answers (from when each was due), and how far the client fell behind."""
    counts = {status: 0 for status in STATUSES}
    for o in outcomes:
        counts[o.status] = counts.get(o.status, 0) + 1
    ok = [o for o in outcomes if o.status == OK]
    span = max([duration_s] + [o.done_s for o in ok]) if ok else duration_s
    times = [o.response_ms for o in ok]
    lags = [(o.sent_s - o.scheduled_s) * 1000.0 for o in outcomes]
    sent = len(outcomes)
    return {
        "offered_rps": offered_rate, "duration_s": duration_s, "sent": sent,
        "sent_rps": sent / duration_s if duration_s else 0.0, **counts,
        "throughput_rps": len(ok) / span if span else 0.0,
        "refused_fraction": counts[REFUSED] / sent if sent else 0.0,
        "failed_fraction": (sent - counts[OK]) / sent if sent else 0.0,
        "p50_ms": percentile(times, 50), "p95_ms": percentile(times, 95), "p99_ms": percentile(times, 99),
        "max_ms": max(times) if times else None, "max_lag_ms": max(lags) if lags else 0.0,
    }
