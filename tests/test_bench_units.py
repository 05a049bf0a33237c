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


# ------------------------------------------------------------------------------------------------
# corpus, statistics, report
# ------------------------------------------------------------------------------------------------
from bench.accounting import cpu_delta, stats_delta  # noqa: E402
from bench.common import chunks, parse_settings  # noqa: E402
from bench.corpus import LANGS, CorpusGenerator  # noqa: E402
from bench.report import Row, compute_ratios, markdown_table, print_table, target_ratios  # noqa: E402


@pytest.fixture(scope="module")
def generator():
    return CorpusGenerator(lexicon=500)


def test_corpus_is_the_same_every_run_and_sized_as_asked(generator):
    texts = generator.texts(60, seed=7, chars=300)
    assert texts == CorpusGenerator(lexicon=500).texts(60, seed=7, chars=300)
    assert texts != generator.texts(60, seed=8, chars=300)
    assert all(0 < len(t) <= 300 * 1.15 and t == t.rstrip() for t in texts)
    assert sum(map(len, texts)) / len(texts) > 200
    scripts = {"zh": "\u4e00", "ru": "\u0400", "ar": "\u0600", "ko": "\uac00", "hi": "\u0900"}
    joined = "".join(texts)
    for lang, base in scripts.items():  # the mix spans the scripts, not just Latin
        assert any(base <= c <= chr(ord(base) + 0x1FFF) for c in joined), lang
    assert len(generator.training_sentences(50)) == 50 and set(generator.lexicon) == set(LANGS)


def test_statistics_delta_per_model():
    def snap(requests, ns, execs, batch_execs=0, batch_ns=0):
        return {"requests": requests, "request_ns": ns * 2, "queue_ns": ns // 2, "compute_input_ns": 0,
                "compute_infer_ns": ns, "compute_output_ns": 0, "inferences": requests, "executions": execs,
                "batch_executions": batch_execs, "batch_compute_ns": batch_ns}

    before = {"tok": snap(10, 1_000_000, 10), "onnx": snap(10, 10_000_000, 5, 5, 10_000_000), "idle": snap(3, 5, 3)}
    after = {"tok": snap(20, 3_000_000, 20), "onnx": snap(30, 50_000_000, 10, 10, 50_000_000), "idle": snap(3, 5, 3)}
    delta = stats_delta(before, after, wall=2.0)
    assert set(delta) == {"tok", "onnx"}  # a model with no new request is left out
    assert delta["tok"]["requests"] == 10 and delta["tok"]["compute_ms"] == pytest.approx(0.2)
    assert delta["tok"]["queue_ms"] == pytest.approx(0.1) and delta["tok"]["busy"] == pytest.approx(0.001)
    onnx = delta["onnx"]  # 20 requests in 5 batched executions of 8 ms each, 40 ms busy in 2 s
    assert onnx["executions"] == 5 and onnx["requests_per_exec"] == 4.0
    assert onnx["exec_ms"] == pytest.approx(8.0) and onnx["busy"] == pytest.approx(0.02)
    assert cpu_delta({"a": 1.0}, {"a": 3.0, "b": 1.0}, 2.0) == {"a": 1.0, "b": 0.5}


def rows():
    return [
        Row("server: 8 texts/req x 4 clients", "server", 9000, 30, 1.0, [900.0, 1000.0], tokens=4000, probe=4000.0),
        Row("client.SaT", "server", 9500, 30, 1.0, tokens=4200, probe=4400.0),
        Row("wtpsplit ONNX Runtime: split(text)", "in-process", 7500, 30, 1.0, [30.0, 40.0], tokens=3300, probe=4000.0),
        Row("wtpsplit PyTorch: split(list)", "in-process", 4000, 30, 1.0, tokens=1800, probe=4000.0),
        Row("ONNX model alone: 32x118 tokens", "ceiling", 9200, 30, 1.0, tokens=4100, probe=4100.0),
        Row("server: 1 short text, idle", "latency", 59 * 3, 3, 0.039, [13.0, 12.0, 14.0]),
    ]


def test_target_ratios_compare_the_best_of_each_group():
    numbers = target_ratios(rows())
    assert numbers["vs_wtpsplit_raw"] == pytest.approx(9500 / 7500)
    assert numbers["vs_wtpsplit_normalised"] == pytest.approx(1.0 / (3300 / 4000))  # best "vs alone": 1.0 and 0.825
    assert numbers["vs_alone_raw"] == pytest.approx(9500 / 9200)
    assert numbers["vs_alone_normalised"] == pytest.approx(1.0)
    assert numbers["wtpsplit_vs_alone_raw"] == pytest.approx(7500 / 9200)
    words = compute_ratios(rows())
    assert words["server best / wtpsplit best in-process, raw chars/s"].startswith("1.27 (vs wtpsplit ONNX Runtime")
    assert words["best server (raw)"] == "client.SaT: 9,500 chars/s"
    assert target_ratios([r for r in rows() if r.group != "in-process"]).keys() == {"vs_alone_raw", "vs_alone_normalised"}


def test_tables_show_every_row(capsys):
    table = markdown_table(rows())
    lines = table.splitlines()
    assert len(lines) == 2 + len(rows()) and lines[0].startswith("| mode | chars/s")
    assert "| server: 8 texts/req x 4 clients | 9,000 | 30.0 | 4,000 | 1.00 | 950 | 995 | 999 |" in table
    assert "| client.SaT | 9,500 | 30.0 | 4,200 | 0.95 | - | - | - |" in table
    print_table(rows())
    out = capsys.readouterr().out
    assert all(r.mode in out for r in rows()) and "13.0" in out


def test_request_helpers():
    assert chunks(list(range(7)), 3) == [[0, 1, 2], [3, 4, 5], [6]]
    assert parse_settings("1:1, 8:4,") == [(1, 1), (8, 4)]


# ------------------------------------------------------------------------------------------------
# capacity curve
# ------------------------------------------------------------------------------------------------
from bench.capacity import curve_markdown, knee, knee_sentence, offered_rates, step_busy  # noqa: E402


def point(offered, p99, ok=100, refused=0, failed=0.0, throughput=None):
    return {"offered_rps": offered, "sent_rps": offered, "sent": int(offered * 10), "throughput_rps": throughput or offered, "ok": ok,
            "refused": refused, "refused_fraction": refused / 100, "failed_fraction": failed, "p50_ms": p99 / 3,
            "p95_ms": p99 / 1.5, "p99_ms": p99, "duration_s": 10.0, "chars_per_request": 2400.0,
            "busy": {"onnx": offered / 4, "tokenizer": 0.05}}


def test_offered_rates_are_fractions_of_capacity_read_as_round_numbers():
    assert offered_rates(3.6789, [0.1, 0.5, 1.0, 1.5]) == [0.368, 1.84, 3.68, 5.52]
    assert offered_rates(1234.0, [1.0, 1.0, 0.25]) == [308.0, 1230.0]
    assert offered_rates(0.0, [1.0]) == []


def test_knee_is_the_last_load_of_the_run_that_kept_the_slo():
    curve = [point(1, 300), point(2, 400), point(3, 900), point(3.5, 450), point(4, 5000)]
    assert knee(curve, 500)["offered_rps"] == 2  # 3.5 met it again, but 3 did not: the knee stays at 2
    assert knee(curve, 1000)["offered_rps"] == 3.5
    assert knee(curve, 100) is None
    refusing = [point(1, 300), point(2, 320, refused=5, failed=0.05)]  # a bounded queue: fast, but refusing
    assert knee(refusing, 500)["offered_rps"] == 1
    assert knee([point(1, 300, ok=0)], 500) is None
    text = knee_sentence(knee(curve, 500), 500, 8, 2400.0)
    assert text.startswith("2 requests/s of 8 texts at p99 <= 500 ms (16 texts/s, 4,800 chars/s")
    assert "not met" in knee_sentence(None, 100, 8, 2400.0)


def test_curve_table_and_busiest_step():
    table = curve_markdown([point(2, 400), point(1, 300, refused=3, failed=0.03)]).splitlines()
    assert table[0].startswith("| offered req/s | requests | ok req/s | chars/s | p50 ms")
    assert table[2] == "| 1 | 10 | 1 | 2,400 | 100 | 200 | 300 | 3 (3%) | 3.0% | onnx 25% | - |"
    assert table[3].startswith("| 2 |")  # sorted by offered load
    stats = {"sat_tokenizer_ab": {"busy": 0.1}, "m_onnx": {"busy": 1.8}, "sat_postprocessor_t0_25": {"busy": 0.2},
             "m": {"busy": None}}
    assert step_busy(stats) == {"tokenizer": 0.1, "onnx": 1.8, "postprocessor": 0.2}


def test_spread_of_the_cpu_targets():
    from bench.spread import spread, spread_text

    runs = [{"vs_wtpsplit_raw": 1.25, "vs_alone_normalised": 0.97}, {"vs_wtpsplit_raw": 1.15},
            {"vs_wtpsplit_raw": 1.31, "vs_alone_normalised": 1.01}]
    summary = spread(runs)
    assert set(summary) == {"vs_wtpsplit_raw", "vs_alone_normalised"}
    raw = summary["vs_wtpsplit_raw"]
    assert (raw["min"], raw["median"], raw["max"], raw["met"], raw["runs"]) == (1.15, 1.25, 1.31, 2, 3)
    assert summary["vs_alone_normalised"]["met"] == 2
    assert "1.25, 1.15, 1.31  (min 1.15, median 1.25, max 1.31; >= 1.2 in 2 of 3 runs)" in spread_text(summary)


def test_patched_configs_are_what_the_builder_renders(tmp_path):
    """A sweep variant that differs only in config.pbtxt lines is a copy of a built repository with those
    lines rewritten (bench/variants.py): the rewrite must give what `sat-triton build` renders."""
    from bench.common import TRITON_NAME
    from bench.variants import Variant, patch_configs
    from sat_triton.builder import repository

    def render(variant: Variant, root):
        settings = repository.RepositorySettings(
            names=repository.ModelNames(TRITON_NAME), max_queue_delay_us=variant.max_queue_delay_us,
            max_queue_size=variant.max_queue_size, queue_timeout_ms=variant.queue_timeout_ms)
        values = {**repository.wire_names(), "INPUT_IDS_TYPE": "TYPE_INT64", "ATTENTION_MASK_TYPE": "TYPE_INT64",
                  "LOGITS_TYPE": "TYPE_FP32", "max_batch_size": 64, "instance_kind": "KIND_CPU",
                  "tokenizer_instance_count": variant.step_instances["tokenizer"],
                  "postprocessor_instance_count": variant.step_instances["postprocessor"],
                  "onnx_instance_count": variant.onnx_instance_count, "intra_op_threads": variant.intra_op_threads,
                  "tokenizer_threads": variant.tokenizer_threads, "length_granularity": variant.length_granularity,
                  "dynamic_batching": repository.dynamic_batching(settings, variant.dynamic_batching),
                  "step_queue": repository.step_queue(settings),
                  "long_instance_count": repository.long_instance_count(settings),
                  "onnx_model": f"{TRITON_NAME}_onnx", "tokenizer_model": "sat_tokenizer_ab",
                  "max_queue_delay_us": variant.max_queue_delay_us, "cls_id": 0, "sep_id": 2, "pad_id": 1,
                  "pad_to_multiple_of": 64, "default_threshold": 0.25, "language": "", "max_text_chars": 100,
                  "max_request_chars": 200, "max_ensemble_request_chars": 50, "max_request_texts": 10}
        for template, name in (("onnx_python", f"{TRITON_NAME}_onnx"), ("tokenizer", "sat_tokenizer_ab"),
                               ("postprocessor", "sat_postprocessor_t0_25"), ("long", f"{TRITON_NAME}_long")):
            (root / name).mkdir(parents=True, exist_ok=True)
            text = repository.render(repository.TEMPLATES / template / "config.pbtxt", {**values, "name": name})
            (root / name / "config.pbtxt").write_text(text)
        return {p.parent.name: p.read_text() for p in root.glob("*/config.pbtxt")}

    built = Variant("base", onnx_instance_count=2, dynamic_batching=False)
    variant = Variant("other", instance_count=3, onnx_instance_count=1, intra_op_threads=2, tokenizer_threads="0",
                      max_queue_size=0, queue_timeout_ms=500, max_queue_delay_us=700, dynamic_batching=True,
                      length_granularity=32)
    render(built, tmp_path / "patched")
    patch_configs(tmp_path / "patched", variant, "cpu")
    patched = {p.parent.name: p.read_text() for p in (tmp_path / "patched").glob("*/config.pbtxt")}
    expected = render(variant, tmp_path / "rendered")
    for name, text in expected.items():  # the same lines; the rewritten ones may sit elsewhere in the file
        assert sorted(patched[name].splitlines()) == sorted(text.splitlines()), name
