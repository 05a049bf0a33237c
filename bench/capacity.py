#!/usr/bin/env python
"""The capacity curve: offered load from idle to past capacity, as an operator's load test sends it.

For each texts-per-request size k: a closed-loop run finds what the server sustains (requests/s),
then open-loop runs offer fractions of that (``--load_fractions``, Poisson arrivals, each request sent
when due whatever the server does) and record every request's outcome (bench/load.py). Each point
reports throughput (ok answers/s), p50/p95/p99 response time from when each request was due, the
CPU the rest of the machine used meanwhile ("others' cores": on a shared machine), and the refusals the servers' bounded queues give past capacity (none without them: latency then grows
with the backlog). From the points, the knee per SLO: "N requests/s of k texts at p99 <= X ms" is
the highest offered load that every load up to it sustained with p99 <= X and < 1% failed.

    python bench/capacity.py --quick                      # the benchmark's base build on this CPU (~6 min)
    python bench/capacity.py --texts_per_request 1,8      # two request sizes, longer points
    python bench/capacity.py --device gpu                 # a GPU machine (build as the benchmark's --device gpu)
    python bench/capacity.py --url localhost:8001 --model sat_3l_sm   # a server you started

It prints a table and the knees, and writes ``capacity-<time>.json``, ``.md`` and ``.png`` (latency
percentiles and throughput against offered load; needs matplotlib) to ``<work_dir>/results/``
(``--plot`` names another PNG path). Build flags as in bench/benchmark.py.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if sys.path and Path(sys.path[0] or ".").resolve() == ROOT / "bench":
    sys.path.pop(0)  # run as a script: bench/'s modules are bench.*, never top-level names
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402
from collections.abc import Sequence  # noqa: E402

from bench.common import TRITON_NAME, chunks, log, parse_list  # noqa: E402

DEFAULT_FRACTIONS = "0.25,0.5,0.7,0.85,1,1.15,1.3,1.6"
DEFAULT_SLOS = "100,250,500,1000,2000"


# ------------------------------------------------------------------------------------------------
# Pure: the rates to offer, the knee, the table
# ------------------------------------------------------------------------------------------------
def round_sig(value: float, digits: int = 3) -> float:
    """``value`` to ``digits`` significant digits (rates that read well in a table)."""
    if value <= 0:
        return 0.0
    return round(value, digits - 1 - int(math.floor(math.log10(value))))


def offered_rates(capacity_rps: float, fractions: Sequence[float]) -> list[float]:
    """The offered loads of a curve: ``fractions`` of the measured capacity, ascending, no repeats."""
    return sorted({round_sig(capacity_rps * f) for f in fractions if f > 0 and capacity_rps > 0})


def meets(point: dict, slo_ms: float, max_failed: float = 0.01) -> bool:
    """A point meets an SLO when its p99 is within it and fewer than ``max_failed`` of its requests
    failed (refused, timed out or worse): an empty or refusing point does not."""
    return point["ok"] > 0 and point["p99_ms"] is not None and point["p99_ms"] <= slo_ms \
        and point["failed_fraction"] < max_failed


def knee(points: Sequence[dict], slo_ms: float, max_failed: float = 0.01) -> dict | None:
    """The highest offered load that it and every lower one met the SLO (None: not even the lowest)."""
    best = None
    for point in sorted(points, key=lambda p: p["offered_rps"]):
        if not meets(point, slo_ms, max_failed):
            break
        best = point
    return best


def knee_sentence(point: dict | None, slo_ms: float, texts_per_request: int, chars_per_request: float) -> str:
    if point is None:
        return f"p99 <= {slo_ms:g} ms: not met at any offered load measured (k = {texts_per_request})"
    rate = point["offered_rps"]
    texts = "text" if texts_per_request == 1 else "texts"
    return (f"{rate:,.3g} requests/s of {texts_per_request} {texts} at p99 <= {slo_ms:g} ms "
            f"({rate * texts_per_request:,.3g} texts/s, {rate * chars_per_request:,.0f} chars/s; "
            f"measured p99 {point['p99_ms']:,.0f} ms)")


def _ms(value) -> str:
    return "-" if value is None else f"{value:,.0f}" if value >= 100 else f"{value:.1f}"


COLUMNS = ["offered req/s", "requests", "ok req/s", "chars/s", "p50 ms", "p95 ms", "p99 ms", "refused", "failed",
           "busiest step", "others' cores"]


def curve_rows(points: Sequence[dict]) -> list[list[str]]:
    """One row of strings per point, in COLUMNS order."""
    rows = []
    for p in sorted(points, key=lambda q: q["offered_rps"]):
        busiest = max(p.get("busy", {}).items(), key=lambda kv: kv[1], default=None)
        rows.append([f"{p['offered_rps']:,.3g}", f"{p['sent']:,}", f"{p['throughput_rps']:,.3g}",
                     f"{p['throughput_rps'] * p['chars_per_request']:,.0f}", _ms(p["p50_ms"]), _ms(p["p95_ms"]),
                     _ms(p["p99_ms"]), f"{p['refused']} ({p['refused_fraction'] * 100:.0f}%)",
                     f"{p['failed_fraction'] * 100:.1f}%",
                     f"{busiest[0]} {busiest[1] * 100:.0f}%" if busiest else "-",
                     "-" if p.get("other_cores") is None else f"{p['other_cores']:.2f}"])
    return rows


def curve_markdown(points: Sequence[dict]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---:|" * (len(COLUMNS) - 1) + "---|"]
    lines += ["| " + " | ".join(row) + " |" for row in curve_rows(points)]
    return "\n".join(lines)


def curve_text(points: Sequence[dict]) -> str:
    rows = [COLUMNS] + curve_rows(points)
    widths = [max(len(r[i]) for r in rows) for i in range(len(COLUMNS))]
    return "\n".join("  ".join(cell.rjust(w) for cell, w in zip(r, widths)) for r in rows)


def step_busy(delta: dict) -> dict[str, float]:
    """How busy each step's instances were in a point (Triton's statistics), keyed tokenizer/onnx/postprocessor."""
    out = {}
    for name, d in delta.items():
        kind = ("tokenizer" if "tokenizer" in name else "postprocessor" if "postprocessor" in name
                else "onnx" if name.endswith("_onnx") else None)
        if kind and d.get("busy") is not None:
            out[kind] = out.get(kind, 0.0) + d["busy"]
    return out


# ------------------------------------------------------------------------------------------------
# Against a server
# ------------------------------------------------------------------------------------------------
def estimate_capacity(url: str, model: str, requests: list[list[str]], clients: int, seconds: float,
                      processes: int) -> float:
    """Requests/s the server sustains under a closed loop of ``clients`` (the curve's 100%)."""
    from bench.load import drive

    wall, latencies, _, _ = drive(url, model, requests, clients, seconds, processes)
    return len(latencies) / wall


def measure_point(url: str, model: str, requests: list[list[str]], rate: float, args, server_pid=None) -> dict:
    from bench.accounting import cpu_delta, machine_busy, process_cpu, stats_delta, stats_snapshot, wait_idle
    from bench.load import open_loop, summarise

    # long enough for --min_requests at a low rate (up to three times --point_seconds)
    seconds = min(max(args.point_seconds, args.min_requests / rate), 3 * args.point_seconds)
    wait_idle(url)
    before, cpu, busy, t0 = stats_snapshot(url), process_cpu(server_pid), machine_busy(), time.perf_counter()
    outcomes = open_loop(url, model, requests, rate, seconds, protocol=args.protocol,
                         arrivals=args.arrivals, seed=len(requests), timeout_s=args.request_timeout_s,
                         processes=args.open_loop_processes)
    point = summarise(outcomes, seconds, rate)
    span = max([seconds] + [o.done_s for o in outcomes])
    point["busy"] = step_busy(stats_delta(before, stats_snapshot(url), span))
    wall = time.perf_counter() - t0
    ours = sum(cpu_delta(cpu, process_cpu(server_pid), wall).values())
    end = machine_busy()
    point["cpu_cores"] = ours  # this process (the load) and, when it started the server, the server's
    point["other_cores"] = None if busy is None or end is None else max(0.0, (end - busy) / wall - ours)
    point["errors"] = sorted({o.detail for o in outcomes if o.status not in ("ok", "refused")})[:3]
    return point


def measure_curves(url: str, model: str, corpus: list[str], args, server_pid=None) -> list[dict]:
    """Per texts-per-request size: the capacity estimate, the points and the knees."""
    curves = []
    for k in parse_list(args.texts_per_request):
        requests = chunks(corpus, k)
        chars_per_request = sum(map(len, corpus)) / len(requests)
        if args.rates:
            capacity, rates = None, sorted(float(r) for r in args.rates.split(",") if r.strip())
        else:
            capacity = estimate_capacity(url, model, requests, args.closed_loop_clients, args.point_seconds,
                                         args.closed_loop_processes)
            rates = offered_rates(capacity, [float(f) for f in args.load_fractions.split(",") if f.strip()])
            log(f"k={k}: closed loop of {args.closed_loop_clients} clients sustained {capacity:,.2f} requests/s; "
                f"offering {rates}")
        points = []
        for rate in rates:
            point = measure_point(url, model, requests, rate, args, server_pid)
            point.update(texts_per_request=k, chars_per_request=chars_per_request)
            points.append(point)
            log(f"k={k} offered {rate:,.3g}/s: ok {point['throughput_rps']:,.3g}/s, p50 {_ms(point['p50_ms'])} ms, "
                f"p99 {_ms(point['p99_ms'])} ms, refused {point['refused']}, failed {point['failed_fraction']:.1%}")
        slos = [float(x) for x in args.slo_ms.split(",") if x.strip()]
        knees = {f"{slo:g}": knee_sentence(knee(points, slo), slo, k, chars_per_request) for slo in slos}
        curves.append({"texts_per_request": k, "chars_per_request": chars_per_request,
                       "closed_loop_rps": capacity, "points": points, "knees": knees})
    return curves


def build_parser() -> argparse.ArgumentParser:
    from bench.cli import add_common_arguments

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--quick", action="store_true", help="shorter points (10 s on cpu instead of 20)")
    add_common_arguments(parser)
    parser.add_argument("--url", help="a running server's gRPC address (host:port; with --protocol http its HTTP "
                        "one) instead of building and serving the benchmark's base repository")
    parser.add_argument("--model", default=TRITON_NAME, help="the ensemble to load (default: %(default)s)")
    parser.add_argument("--repository", type=Path,
                        help="serve this model repository instead of building the benchmark's (give --model)")
    parser.add_argument("--texts", type=int, help="corpus size (default: 512 on cpu, 4000 on gpu)")
    parser.add_argument("--texts_per_request", help="comma list of request sizes k (default: 8 on cpu, 32 on gpu)")
    parser.add_argument("--load_fractions", default=DEFAULT_FRACTIONS,
                        help="offered loads as fractions of the closed-loop capacity (default: %(default)s)")
    parser.add_argument("--rates", help="offered loads in requests/s instead (comma list; skips the estimate)")
    parser.add_argument("--point_seconds", type=float,
                        help="seconds of load per point (default: 10 with --quick on cpu, else 20; 10 on gpu)")
    parser.add_argument("--min_requests", type=int, default=30,
                        help="a point at a low rate runs until about this many requests were sent, up to three times "
                        "--point_seconds (default: %(default)s)")
    parser.add_argument("--slo_ms", default=DEFAULT_SLOS, help="p99 SLOs to state the knee for (default: %(default)s)")
    parser.add_argument("--protocol", choices=["grpc", "http"], default="grpc", help="(default: %(default)s)")
    parser.add_argument("--arrivals", choices=["poisson", "uniform"], default="poisson",
                        help="open-loop arrival process (default: %(default)s)")
    parser.add_argument("--request_timeout_s", type=float, default=60.0,
                        help="the client's deadline per request; later answers count as timeouts (default: %(default)s)")
    parser.add_argument("--closed_loop_clients", type=int, help="clients of the capacity estimate (default: 4 on cpu, "
                        "64 on gpu)")
    parser.add_argument("--closed_loop_processes", type=int, help="(default: 1 on cpu, 4 on gpu)")
    parser.add_argument("--open_loop_processes", type=int, help="client processes sending the open-loop load "
                        "(default: 1 on cpu, 4 on gpu)")
    parser.add_argument("--plot", type=Path, help="also write the PNG here (e.g. docs/capacity-cpu.png)")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    gpu = args.device == "gpu"
    args.texts = args.texts or (4000 if gpu else 512)
    args.texts_per_request = args.texts_per_request or ("32" if gpu else "8")
    args.point_seconds = args.point_seconds or (10.0 if gpu or args.quick else 20.0)
    args.closed_loop_clients = args.closed_loop_clients or (64 if gpu else 4)
    args.closed_loop_processes = args.closed_loop_processes or (4 if gpu else 1)
    args.open_loop_processes = args.open_loop_processes or (4 if gpu else 1)
    from bench.corpus import CorpusGenerator

    corpus = CorpusGenerator().texts(args.texts, seed=11, chars=args.text_chars)
    started = time.perf_counter()
    work = args.work_dir.resolve()
    if args.url:
        curves, described = measure_curves(args.url, args.model, corpus, args), f"the server at {args.url}"
    else:
        curves, described = _serve_and_measure(args, corpus, work)
    _report(args, curves, described, work, time.perf_counter() - started)
    return 0


def _serve_and_measure(args, corpus: list[str], work: Path) -> tuple[list[dict], str]:
    from bench import artifacts
    from bench.cli import base_variant, check_device, stop_on_sigterm
    from bench.load import drive_threads
    from bench.serving import served
    from bench.variants import build_repository

    stop_on_sigterm()
    check_device(args.device)
    if args.repository:
        repo, described = args.repository.resolve(), f"repository {args.repository}"
    else:
        base = base_variant(args)
        shape = artifacts.Shape(*parse_list(args.shape))
        made = artifacts.prepare(work, shape, args.text_chars, args.tokenizer_vocab)
        repo = build_repository(base, made.checkpoint_dir, made.tokenizer_dir,
                                work / f"repo-{shape.tag}-{args.device}-{args.onnx_backend}-base", args.device,
                                args.onnx_backend)
        described = f"the benchmark's base build ({base.describe()}), checkpoint {shape.tag}"
    with served(repo, "capacity", work / "logs", args.server_bin) as (server, _, server_pid):
        url = server.http_url if args.protocol == "http" else server.grpc_url
        for k in parse_list(args.texts_per_request):  # warm-up: every request size once
            drive_threads(server.grpc_url, args.model, chunks(corpus[:max(k, 8)], k), 1)
        return measure_curves(url, args.model, corpus, args, server_pid), described


def _report(args, curves: list[dict], described: str, work: Path, elapsed: float) -> None:
    title = (f"capacity curve: {described}; device {args.device}, {os.cpu_count()} CPUs, {args.protocol}, "
             f"{args.arrivals} arrivals, {args.point_seconds:g} s per point")
    print(f"\n== {title} ==")
    for curve in curves:
        estimate = curve["closed_loop_rps"]
        print(f"\nk = {curve['texts_per_request']} texts per request (~{curve['chars_per_request']:,.0f} chars)"
              + (f"; closed loop of {args.closed_loop_clients} clients: {estimate:,.2f} requests/s" if estimate else ""))
        print(curve_text(curve["points"]))
        for sentence in curve["knees"].values():
            print(f"  knee: {sentence}")
    print(f"\ntotal time: {elapsed:.0f}s")
    results = work / "results"
    results.mkdir(parents=True, exist_ok=True)
    stem = results / f"capacity-{time.strftime('%Y%m%d-%H%M%S')}-{args.device}"
    stem.with_suffix(".json").write_text(json.dumps({
        "title": title, "args": {k: str(v) for k, v in vars(args).items()}, "host": platform.node(),
        "cpus": os.cpu_count(), "curves": curves, "elapsed_s": elapsed}, indent=1, default=str))
    stem.with_suffix(".md").write_text("\n\n".join(
        f"k = {c['texts_per_request']}:\n\n{curve_markdown(c['points'])}\n\n" + "\n".join(
            f"- {s}" for s in c["knees"].values()) for c in curves) + "\n")
    print(f"results: {stem.with_suffix('.json')} (+ .md)")
    try:
        from bench.plot import draw_capacity
    except ImportError as exc:  # matplotlib is optional: pip install matplotlib
        print(f"no plot: {exc}")
        return
    for path in [stem.with_suffix(".png")] + ([args.plot] if args.plot else []):
        draw_capacity(curves, [float(x) for x in args.slo_ms.split(",") if x.strip()], title, path)
        print(f"plot: {path}")


if __name__ == "__main__":
    sys.exit(main())
