#!/usr/bin/env python
"""The load-and-fault run: `sat-triton serve` below capacity, past capacity, with a killed Python stub
and through a restart, on loopback, bounded in time. Its figures are the ones in docs/reliability.md.

    python bench/faults.py                        # tiny model, built here (~1 min), then ~2 minutes
    python bench/faults.py --shape sat-3l-sm      # the benchmark's sat-3l-sm-shaped checkpoint (CPU)
    python bench/faults.py --quick --repository DIR    # the short run the test suite makes

Phases (each prints one line; the JSON record goes to --out):

1. **capacity**: closed loop, ``--clients`` gRPC clients, requests/s the server sustains;
2. **below capacity**: open loop (Poisson arrivals) at ``--below`` x capacity over gRPC and HTTP at
   once: every request must succeed with the sentences the idle server gave it (sequentially);
3. **past capacity**: open loop at ``--past`` x capacity: refusals counted (UNAVAILABLE / 503 from the
   bounded queues) and how fast they came, accepted requests' p50/p99 in the first and second half
   of the run (bounded: the second half no worse than twice the first), then the seconds until a
   request is answered again, and until one is answered at normal speed (twice the below-capacity p99);
4. **killed stub**: closed-loop clients run while the tokenizer's (and, without --quick, the ONNX
   step's) Python stub is SIGKILLed: how soon readiness says 503, how long until it is 200 again
   (healed), the errors clients saw meanwhile and that every answer was still right;
5. **restart**: clients run while serve gets SIGTERM (drain) and is started again on the same ports:
   every request gets the right sentences or an error;

with tritonserver's and each stub's resident memory before and after. Exits 1 when a check fails.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import chunks, log  # noqa: E402
from bench.load import OK, REFUSED, WRONG, drive_threads, open_loop, request_tensors, summarise  # noqa: E402
from bench.supervised import ClosedLoop, ServeProcess, sequential  # noqa: E402

SHAPES = {"tiny": (2, 32, 2, 64, 8000), "sat-3l-sm": (3, 768, 12, 3072, 250002)}


# ------------------------------------------------------------------------------------------------
# Phases
# ------------------------------------------------------------------------------------------------
def ms(value) -> str:
    return "-" if value is None else f"{value:,.0f} ms"


def phase_below(serve, model, requests, expected, rate, seconds) -> dict:
    results = {}

    def run(protocol: str) -> None:
        outcomes = open_loop(serve.grpc_url if protocol == "grpc" else serve.http_url, model, requests, rate / 2,
                             seconds, protocol=protocol, seed=1 if protocol == "grpc" else 2, expected=expected)
        results[protocol] = summarise(outcomes, seconds, rate / 2)
        results[protocol]["errors"] = sorted({o.detail[:120] for o in outcomes if o.status != OK})[:3]

    threads = [threading.Thread(target=run, args=(p,)) for p in ("grpc", "http")]
    [t.start() for t in threads]
    [t.join() for t in threads]
    return results


def phase_past(serve, model, requests, expected, rate, seconds, normal_ms) -> dict:
    """Open loop at ``rate`` (gRPC); meanwhile, from the end of the sending window, a probe measures when
    a request is answered at normal speed again (within ``normal_ms``)."""
    import tritonclient.grpc as grpcclient

    recovered, probes = {}, []

    def probe(start_at: float) -> None:
        client = grpcclient.InferenceServerClient(serve.grpc_url)
        time.sleep(max(0.0, start_at - time.monotonic()))
        text_input, outputs = request_tensors(grpcclient, requests[0])
        while time.monotonic() - start_at < 60:
            t0 = time.monotonic()
            try:
                client.infer(model, [text_input], outputs=outputs)
                took = (time.monotonic() - t0) * 1000
                probes.append((round(t0 - start_at, 2), round(took)))
                recovered.setdefault("ok_s", time.monotonic() - start_at)
                if took <= normal_ms:
                    recovered["normal_s"] = time.monotonic() - start_at
                    break
            except Exception as exc:  # refused while the backlog clears
                probes.append((round(t0 - start_at, 2), str(exc)[:60]))
            time.sleep(0.05)
        client.close()

    from bench.accounting import stats_delta, stats_snapshot
    from bench.capacity import step_busy

    prober = threading.Thread(target=probe, args=(time.monotonic() + seconds,))
    before = stats_snapshot(serve.grpc_url)
    prober.start()
    outcomes = open_loop(serve.grpc_url, model, requests, rate, seconds, seed=3, expected=expected)
    prober.join()
    result = summarise(outcomes, seconds, rate)
    span = max([seconds] + [o.done_s for o in outcomes])
    result["busy"] = busy = step_busy(stats_delta(before, stats_snapshot(serve.grpc_url), span))
    result["bottleneck"] = max(busy, key=busy.get) if busy else None
    refused = [o.latency_ms for o in outcomes if o.status == REFUSED]
    result["refused_p50_ms"] = float(np.percentile(refused, 50)) if refused else None
    result["refused_p99_ms"] = float(np.percentile(refused, 99)) if refused else None
    halves = [[o.response_ms for o in outcomes if o.status == OK and (o.scheduled_s < seconds / 2) == first]
              for first in (True, False)]
    result["ok_p99_first_half_ms"], result["ok_p99_second_half_ms"] = (
        float(np.percentile(h, 99)) if len(h) >= 2 else None for h in halves)
    result["recovery_s"] = recovered.get("ok_s")  # the first request accepted and answered after the load
    result["normal_speed_s"] = recovered.get("normal_s")
    result["probes"] = probes[:20]
    result["refusal_messages"] = sorted({o.detail[:100] for o in outcomes if o.status == REFUSED})[:2]
    result["errors"] = sorted({o.detail[:120] for o in outcomes if o.status not in (OK, REFUSED)})[:3]
    return result


def phase_stub_kill(serve, model, requests, expected, kinds: list[str]) -> list[dict]:
    from sat_triton.builder import processes

    found = []
    with ClosedLoop(serve, model, requests, expected, grpc_clients=2, http_clients=1) as load:
        time.sleep(1.0)
        for kind in kinds:
            triton = serve.tritonserver_pid()
            stub = next(s for s in processes.python_stubs(triton)
                        if (kind == "onnx" and s.model == f"{model}_onnx") or s.model.startswith(f"sat_{kind}_"))
            killed = time.monotonic()
            os.kill(stub.pid, signal.SIGKILL)
            not_ready = serve.wait_readiness(503, timeout=10)
            healed = serve.wait_readiness(200, timeout=120)
            time.sleep(1.0)
            end = time.monotonic()
            during = load.between(killed, killed + (not_ready or 0) + (healed or 0))
            after = load.between(killed + (not_ready or 0) + (healed or 0) + 0.2, end)
            found.append({"stub": stub.model, "readiness_503_after_s": not_ready, "healed_after_s": healed,
                          "during": dict(during), "after": dict(after),
                          "restarted": serve.tritonserver_pid() != triton})
        found[-1]["errors"] = dict(load.errors().most_common(4))
    return found


def phase_restart(serve: ServeProcess, model, requests, expected) -> tuple[dict, ServeProcess]:
    with ClosedLoop(serve, model, requests, expected, grpc_clients=2, http_clients=1) as load:
        time.sleep(1.0)
        stopping = time.monotonic()
        code, stop_s = serve.stop(signal.SIGTERM)
        again = ServeProcess(serve.repository, serve.ports, serve.extra)
        start_s = again.start()
        load.serve = again
        restarted = time.monotonic()
        time.sleep(2.0)
    after = load.between(restarted + 0.5)
    return {"serve_exit_code": code, "stop_s": stop_s, "start_s": start_s,
            "before": dict(load.between(0, stopping)), "during": dict(load.between(stopping, restarted + 0.5)),
            "after": dict(after), "errors": dict(load.errors().most_common(4))}, again


# ------------------------------------------------------------------------------------------------
# Repository and checks
# ------------------------------------------------------------------------------------------------
def build(args, work: Path) -> Path:
    from bench import artifacts
    from bench.corpus import CorpusGenerator

    shape = artifacts.Shape(*SHAPES[args.shape])
    generator = CorpusGenerator()
    tokenizer_dir = artifacts.tokenizer_path(work, shape.vocab if args.shape == "tiny" else 8000)
    checkpoint = artifacts.make_checkpoint(work / f"ckpt-{shape.tag}", shape, tokenizer_dir,
                                           generator.texts(16, seed=3, chars=300))
    out = work / f"faults-repo-{args.shape}-q{args.max_queue_size}-t{args.queue_timeout_ms}"
    if not (out / args.model / "config.pbtxt").is_file():
        cmd = [sys.executable, "-m", "sat_triton.builder", "build", "--model_name_or_path", str(checkpoint),
               "--tokenizer_name_or_path", str(tokenizer_dir), "--output_dir", str(out), "--triton_model_name",
               args.model, "--device", "cpu", "--onnx_backend", "python"]
        for flag in ("max_queue_size", "queue_timeout_ms"):
            if getattr(args, flag) is not None:
                cmd += [f"--{flag}", str(getattr(args, flag))]
        log("building: " + " ".join(cmd[2:]))
        done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
        if done.returncode != 0:
            raise SystemExit(f"sat-triton build failed:\n{done.stdout}\n{done.stderr}")
    return out


def checks(record: dict) -> list[str]:
    failed = []
    for protocol, result in record["below"].items():
        if result["ok"] != result["sent"]:
            failed.append(f"below capacity ({protocol}): {result['sent'] - result['ok']} of {result['sent']} "
                          f"requests failed or were wrong: {result['errors']}")
    past = record["past"]
    if not past["refused"]:
        failed.append("past capacity: nothing was refused (is the queue bounded?)")
    if past[WRONG] or past["errors"]:
        failed.append(f"past capacity: {past[WRONG]} wrong answers, errors {past['errors']}")
    first, second = past["ok_p99_first_half_ms"], past["ok_p99_second_half_ms"]
    if first is not None and second is not None and second > 2 * first + 1000:
        failed.append(f"past capacity: accepted p99 grew from {first:.0f} ms to {second:.0f} ms although every "
                      f"step's queue is bounded (bottleneck: the {past['bottleneck']} step, busy {past['busy']})")
    if past["recovery_s"] is None or past["recovery_s"] > 10:
        failed.append(f"past capacity: no request answered within 10 s after the load ({past['recovery_s']})")
    for kill in record["stub_kill"]:
        if kill["readiness_503_after_s"] is None or kill["readiness_503_after_s"] > 5:
            failed.append(f"killed {kill['stub']}: readiness did not turn 503 within 5 s")
        if kill["healed_after_s"] is None or kill["healed_after_s"] > 60:
            failed.append(f"killed {kill['stub']}: not healed within 60 s")
        if set(kill["after"]) - {OK}:
            failed.append(f"killed {kill['stub']}: requests failed after it healed: {kill['after']}")
    restart = record["restart"]
    if restart["serve_exit_code"] != 0:
        failed.append(f"restart: serve exited with {restart['serve_exit_code']} on SIGTERM")
    if set(restart["after"]) - {OK}:
        failed.append(f"restart: requests failed once it was back: {restart['after']}")
    for name in ("stub_kill", "restart"):
        phases = record[name] if isinstance(record[name], list) else [record[name]]
        if any(p.get(key, {}).get(WRONG) for p in phases for key in ("before", "during", "after")):
            failed.append(f"{name}: a request got wrong sentences (a silent loss)")
    return failed


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repository", type=Path, help="serve this model repository (default: build one)")
    parser.add_argument("--model", help="the ensemble to load (default: the repository's first ensemble; "
                                        "sat_faults when building)")
    parser.add_argument("--shape", choices=sorted(SHAPES), default="tiny",
                        help="checkpoint to generate and build when no --repository (default: %(default)s)")
    parser.add_argument("--max_queue_size", type=int, help="build flag (default: the builder's)")
    parser.add_argument("--queue_timeout_ms", type=int, help="build flag (default: the builder's)")
    parser.add_argument("--quick", action="store_true", help="2 s per load phase, one stub kill (the test suite's run)")
    parser.add_argument("--seconds", type=float, help="seconds per load phase (default: 2 with --quick, else 10)")
    parser.add_argument("--exit_timeout", type=float, default=10,
                        help="sat-triton serve --exit_timeout: the restart phase's clients keep sending, so its drain "
                             "takes this long (default: %(default)s)")
    parser.add_argument("--clients", type=int, default=4, help="closed-loop clients for the capacity (default: 4)")
    parser.add_argument("--texts_per_request", type=int, default=8,
                        help="texts of about 300 characters per request; with the tiny model the tokenizer step "
                             "saturates first, with sat-3l-sm the ONNX step (default: %(default)s)")
    parser.add_argument("--below", type=float, default=0.5, help="offered load below capacity, x capacity "
                                                                 "(default: %(default)s)")
    parser.add_argument("--past", type=float, default=3.0, help="offered load past capacity, x capacity "
                                                                "(default: %(default)s)")
    parser.add_argument("--work_dir", type=Path, default=ROOT / "bench" / ".work",
                        help="generated checkpoints and repositories (default: %(default)s)")
    parser.add_argument("--out", type=Path, help="JSON record (default: <work_dir>/results/faults-<time>.json)")
    args = parser.parse_args(argv)
    seconds = args.seconds or (2.0 if args.quick else 10.0)
    work = args.work_dir.resolve()
    work.mkdir(parents=True, exist_ok=True)
    if args.repository is None:
        args.model = args.model or "sat_faults"
        repository = build(args, work)
    else:
        from sat_triton.builder.canary import targets

        repository = args.repository
        args.model = args.model or next(t for t in targets(repository) if not t.endswith("_long"))
    from bench.corpus import CorpusGenerator

    texts = CorpusGenerator().texts(40 * args.texts_per_request, seed=11, chars=300)
    requests = chunks(texts, args.texts_per_request)
    record: dict = {"repository": str(repository), "model": args.model, "seconds": seconds, "quick": args.quick,
                    "texts_per_request": args.texts_per_request, "cpus": os.cpu_count(),
                    "load_average_before": os.getloadavg()}
    started = time.monotonic()
    serve = ServeProcess(repository, extra=["--exit_timeout", str(args.exit_timeout)])
    record["start_s"] = serve.start()
    try:
        record["memory_start_mb"] = serve.memory()
        expected = sequential(serve.grpc_url, args.model, requests)
        idle = []
        import tritonclient.grpc as grpcclient

        client = grpcclient.InferenceServerClient(serve.grpc_url)
        for texts_ in requests[:10]:
            text_input, outputs = request_tensors(grpcclient, texts_)
            t0 = time.perf_counter()
            client.infer(args.model, [text_input], outputs=outputs)
            idle.append((time.perf_counter() - t0) * 1000)
        client.close()
        record["idle_p50_ms"] = float(np.percentile(idle, 50))
        wall, latencies, _, _ = drive_threads(serve.grpc_url, args.model, requests, args.clients, seconds)
        capacity = len(latencies) / wall
        record["capacity_rps"] = capacity
        log(f"capacity {capacity:.1f} requests/s ({args.clients} closed-loop clients, {seconds:.0f} s); "
            f"idle p50 {record['idle_p50_ms']:.0f} ms")

        record["below"] = phase_below(serve, args.model, requests, expected, args.below * capacity, seconds)
        for protocol, r in record["below"].items():
            log(f"below capacity, {protocol}: {r['sent']} sent at {r['offered_rps']:.1f}/s, ok {r['ok']}, "
                f"p50 {ms(r['p50_ms'])}, p99 {ms(r['p99_ms'])}")
        # "normal speed": twice the below-capacity p99 (on a shared machine the idle p50 is too strict a bar)
        record["normal_ms"] = normal = max([record["idle_p50_ms"] + 100] +
                                           [2 * (r["p99_ms"] or 0) for r in record["below"].values()])
        record["past"] = past = phase_past(serve, args.model, requests, expected, args.past * capacity, seconds,
                                           normal)
        log(f"past capacity ({args.past:g}x, bottleneck: {past['bottleneck']} step, busy {past['busy']}): "
            f"{past['sent']} sent, ok {past['ok']}, refused {past['refused']} "
            f"(answered in p50 {ms(past['refused_p50_ms'])}, p99 {ms(past['refused_p99_ms'])}), accepted p50 "
            f"{ms(past['p50_ms'])} p99 {ms(past['p99_ms'])} (first half {ms(past['ok_p99_first_half_ms'])}, "
            f"second {ms(past['ok_p99_second_half_ms'])}); after the load a request was answered again after "
            f"{past['recovery_s']} s, within {normal:.0f} ms after {past['normal_speed_s']} s")
        record["memory_after_overload_mb"] = serve.memory()

        kinds = ["tokenizer"] if args.quick else ["tokenizer", "onnx"]
        record["stub_kill"] = phase_stub_kill(serve, args.model, requests, expected, kinds)
        for kill in record["stub_kill"]:
            log(f"killed {kill['stub']}: readiness 503 after {kill['readiness_503_after_s']} s, healed after "
                f"{kill['healed_after_s']} s (restarted: {kill['restarted']}); during {kill['during']}, "
                f"after {kill['after']}")
        record["memory_after_heal_mb"] = serve.memory()

        said = serve.lines
        record["restart"], serve = phase_restart(serve, args.model, requests, expected)
        serve.lines[:0] = said
        r = record["restart"]
        log(f"restart: SIGTERM -> exit {r['serve_exit_code']} in {r['stop_s']:.1f} s, started again in "
            f"{r['start_s']:.1f} s; during {r['during']}, after {r['after']}")
        record["memory_after_restart_mb"] = serve.memory()
    finally:
        code, _ = serve.stop(signal.SIGINT)
    record["elapsed_s"] = time.monotonic() - started
    record["supervisor_said"] = [line.strip() for line in serve.lines if line.startswith("sat-triton serve:")]
    record["load_average_after"] = os.getloadavg()
    record["failed_checks"] = failed = checks(record)
    out = args.out or work / "results" / f"faults-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=1, default=str))
    log(f"memory MB: start {record['memory_start_mb']}, after overload {record['memory_after_overload_mb']}, "
        f"after heal {record['memory_after_heal_mb']}, after restart {record['memory_after_restart_mb']}")
    log(f"record: {out} ({record['elapsed_s']:.0f} s)")
    for line in failed:
        print(f"FAILED: {line}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
