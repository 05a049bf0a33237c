"""The server phases of one model repository: start tritonserver, measure, stop.

:func:`run_server` serves a repository (``builder.server.TritonServer``, free ports), times a short
text on the idle server, drives the closed-loop settings (texts per request x clients) and, for the
base repository, ``client.SaT.split`` and one ``async_infer`` client; around each phase it takes
Triton's statistics, the CPU each process used and the model-alone probes (:mod:`bench.accounting`).
"""

from __future__ import annotations

import os
import time
from contextlib import contextmanager
from pathlib import Path

from .accounting import Phase, stats_delta, stats_snapshot
from .common import SHORT_TEXT, TRITON_NAME, chunks, log
from .load import drive, drive_async, drive_threads, request_tensors, short_latency
from .report import Row
from .variants import Variant, repository_models


@contextmanager
def served(repo: Path, name: str, logdir: Path, server_bin: str | None = None):
    """tritonserver on ``repo`` (free ports, log in ``logdir``) until the block ends; yields the server,
    its startup seconds and its process id. ``server_bin``: the ``bin/`` of the Python environment its
    Python models run in (the stub runs the first ``python3`` on PATH)."""
    from sat_triton.builder.server import TritonServer, free_port

    logdir.mkdir(parents=True, exist_ok=True)
    env = None
    if server_bin:
        env = {"PATH": os.pathsep.join([str(Path(server_bin).resolve()), os.environ.get("PATH", "")])}
    server = TritonServer(repo, http_port=free_port(), grpc_port=free_port(), metrics_port=free_port(),
                          extra_args=["--exit-timeout-secs=5"], log_file=logdir / f"tritonserver-{name}.log", env=env)
    t0 = time.perf_counter()
    server.start()
    try:
        server.wait_ready(repository_models(repo), timeout=900)
        startup = round(time.perf_counter() - t0, 1)
        log(f"server ready in {startup}s")
        yield server, startup, getattr(getattr(server, "_proc", None), "pid", None)
    finally:
        server.stop()


def run_server(args, variant: Variant, repo: Path, corpus: list[str], tokens: int, settings: list[tuple[int, int]],
               extras: bool, reference: list | None, logdir: Path, alone) -> tuple[list[Row], list[dict], dict]:
    chars = sum(map(len, corpus))
    rows: list[Row] = []
    phases: list[dict] = []
    info: dict = {}
    log(f"starting tritonserver on {variant.name} ({variant.describe()})")
    with served(repo, variant.name, logdir, args.server_bin) as (server, startup, server_pid):
        info["startup_s"] = startup
        url = server.grpc_url
        # warm-up: every texts-per-request shape once
        for per_request in sorted({s[0] for s in settings}):
            drive_threads(url, TRITON_NAME, chunks(corpus[: max(per_request, 8)], per_request), 1)
        if args.latency_calls:
            import tritonclient.grpc as grpcclient

            client = grpcclient.InferenceServerClient(url=url)

            def call():
                text_input, outputs = request_tensors(grpcclient, [SHORT_TEXT])
                client.infer(TRITON_NAME, [text_input], outputs=outputs)

            before = stats_snapshot(url)
            lat = short_latency(call, args.latency_calls)
            phases.append({"variant": variant.name, "mode": f"server [{variant.name}]: 1 short text, idle",
                           "wall_s": sum(lat) / 1000, "stats": stats_delta(before, stats_snapshot(url), sum(lat) / 1000)})
            client.close()
            rows.append(Row(f"server [{variant.name}]: 1 short text, idle", "latency", len(SHORT_TEXT) * len(lat),
                            len(lat), sum(lat) / 1000, lat, note=f"{len(SHORT_TEXT)} chars, sequential"))
        for per_request, concurrency in settings:
            requests = chunks(corpus, per_request)
            before, phase = stats_snapshot(url), Phase(alone, server_pid)
            wall, lat, passes, results = drive(url, TRITON_NAME, requests, concurrency, args.min_seconds,
                                               args.client_processes)
            delta = stats_delta(before, stats_snapshot(url), wall)
            phase.finish()
            procs = max(1, min(args.client_processes, concurrency))
            mode = (f"server [{variant.name}]: {per_request} texts/req x {concurrency} clients"
                    + (f" ({procs} processes)" if procs > 1 else ""))
            row = Row(mode, "server", chars * passes, len(corpus) * passes, wall, lat, tokens=tokens * passes,
                      note=", ".join(filter(None, [f"{passes} pass(es)", phase.note()])), probe=phase.probe)
            rows.append(row)
            phases.append({"variant": variant.name, "mode": mode, "per_request": per_request,
                           "concurrency": concurrency, "wall_s": wall, "stats": delta, "cpu_cores": phase.cpu,
                           "other_cores": phase.others})
            log(f"{mode}: {row.chars_s:,.0f} chars/s, p50 {row.pct(50) or 0:.0f} ms")
            key = f"parity [{variant.name}]"
            if reference is not None and key not in info:
                flat = [r for group in results for r in group]
                same = sum(a == b for a, b in zip(flat, reference))
                info[key] = f"{same}/{len(reference)} texts split identically to wtpsplit (PyTorch fp32)"
        if extras:
            best_per_request = max(s[0] for s in settings)
            concurrency = max(s[1] for s in settings)
            from sat_triton.client import SaT as TritonSaT

            sat = TritonSaT(TRITON_NAME, triton_url=url, triton_model_name=TRITON_NAME, concurrency=concurrency)
            list(sat.split(corpus[:8], batch_size=best_per_request))
            before, phase = stats_snapshot(url), Phase(alone, server_pid)
            t0 = time.perf_counter()
            list(sat.split(corpus, batch_size=best_per_request))
            wall = time.perf_counter() - t0
            delta = stats_delta(before, stats_snapshot(url), wall)
            phase.finish()
            sat.close()
            mode = f"client.SaT.split(list, batch_size={best_per_request}, concurrency={concurrency})"
            rows.append(Row(mode, "server", chars, len(corpus), wall, tokens=tokens,
                            note=", ".join(filter(None, ["one call", phase.note()])), probe=phase.probe))
            phases.append({"variant": variant.name, "mode": mode, "wall_s": wall, "stats": delta,
                           "cpu_cores": phase.cpu, "other_cores": phase.others})
            log(f"{mode}: {rows[-1].chars_s:,.0f} chars/s")
            requests = chunks(corpus, best_per_request)
            phase = Phase(alone, server_pid)
            wall, lat = drive_async(url, TRITON_NAME, requests, concurrency)
            phase.finish()
            mode = f"server [{variant.name}]: async_infer, 1 client, {best_per_request} texts/req, {concurrency} in flight"
            rows.append(Row(mode, "server", chars, len(corpus), wall, lat, tokens=tokens, note=phase.note(),
                            probe=phase.probe))
            log(f"{mode}: {rows[-1].chars_s:,.0f} chars/s")
    return rows, phases, info
