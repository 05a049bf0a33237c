"""The benchmark's pure parts: corpus, open-loop outcomes and their summary, statistics deltas, ratios,
tables (bench/). No server, no model, no timing."""

import socket
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import outcomes  # noqa: E402
from bench.outcomes import Outcome, arrival_times, classify, summarise  # noqa: E402


class FakeServerError(Exception):
    """Shaped like tritonclient's InferenceServerException: status() and message()."""

    def __init__(self, status, message):
        super().__init__(message)
        self._status, self._message = status, message

    def status(self):
        return self._status

    def message(self):
        return self._message


def test_classify_tells_refusals_from_timeouts_unreachable_servers_and_errors():
    assert classify(FakeServerError("StatusCode.UNAVAILABLE", "in ensemble 's', Exceeds maximum queue size"))[0] == \
        outcomes.REFUSED
    assert classify(FakeServerError("503", "Request timeout expired"))[0] == outcomes.REFUSED
    assert classify(FakeServerError("429", "slow down"))[0] == outcomes.REFUSED
    assert classify(FakeServerError("StatusCode.DEADLINE_EXCEEDED", "Deadline Exceeded"))[0] == outcomes.TIMEOUT
    assert classify(socket.timeout("timed out"))[0] == outcomes.TIMEOUT
    assert classify(FakeServerError("StatusCode.UNAVAILABLE", "failed to connect to all addresses"))[0] == \
        outcomes.UNREACHABLE
    assert classify(ConnectionRefusedError(111, "Connection refused"))[0] == outcomes.UNREACHABLE
    status, detail = classify(FakeServerError("StatusCode.INTERNAL", "Stub process 'x_0_0' is not healthy"))
    assert status == outcomes.ERROR and "not healthy" in detail and detail.startswith("StatusCode.INTERNAL")


def test_arrival_times_keep_the_rate_and_the_window():
    uniform = arrival_times(4, 2.0, "uniform")
    assert uniform.tolist() == [0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75]
    poisson = arrival_times(200, 50.0, "poisson", seed=3)
    assert abs(len(poisson) / 50.0 - 200) < 200 * 0.05  # 10,000 arrivals: within 5% of the rate
    assert np.all(np.diff(poisson) > 0) and poisson[0] >= 0 and poisson[-1] < 50.0
    gaps = np.diff(poisson)
    assert abs(gaps.std() / gaps.mean() - 1.0) < 0.1  # exponential gaps: as variable as they are long
    assert np.array_equal(poisson, arrival_times(200, 50.0, "poisson", seed=3))
    assert len(arrival_times(0, 10)) == 0
    with pytest.raises(ValueError, match="arrivals"):
        arrival_times(1, 1, "bursty")


def test_summary_counts_outcomes_and_reads_percentiles_from_due_time():
    runs = [Outcome(scheduled_s=i * 0.1, sent_s=i * 0.1, latency_ms=10.0 + i, status=outcomes.OK) for i in range(100)]
    late = Outcome(scheduled_s=10.0, sent_s=10.5, latency_ms=20.0, status=outcomes.OK)  # the client fell behind
    assert late.response_ms == pytest.approx(520.0)
    refused = [Outcome(10.1, 10.1, 1.0, outcomes.REFUSED, "503"), Outcome(10.2, 10.2, 1.0, outcomes.TIMEOUT)]
    summary = summarise(runs + [late] + refused, duration_s=10.0, offered_rate=10.3)
    assert summary["sent"] == 103 and summary["ok"] == 101 and summary["refused"] == 1 and summary["timeout"] == 1
    assert summary["refused_fraction"] == pytest.approx(1 / 103)
    assert summary["failed_fraction"] == pytest.approx(2 / 103)
    # 101 ok answers from 0 until the last ended (10.52 s)
    assert summary["throughput_rps"] == pytest.approx(101 / 10.52)
    latencies = [10.0 + i for i in range(100)] + [520.0]
    assert summary["p50_ms"] == pytest.approx(np.percentile(latencies, 50))
    assert summary["p99_ms"] == pytest.approx(np.percentile(latencies, 99))
    assert summary["max_ms"] == pytest.approx(520.0) and summary["max_lag_ms"] == pytest.approx(500.0)


def test_summary_of_a_run_with_nothing_answered():
    summary = summarise([Outcome(0.0, 0.0, 5.0, outcomes.UNREACHABLE, "refused")], duration_s=1.0, offered_rate=1.0)
    assert summary["ok"] == 0 and summary["throughput_rps"] == 0.0 and summary["p99_ms"] is None
    assert summary["failed_fraction"] == 1.0
