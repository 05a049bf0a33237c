"""The figures of docs/limits.md: bad and oversized inputs (answer, time, server RSS before and after) and
the long model's RSS for long texts, on a tiny CPU build served by a local tritonserver.

    .venv/bin/python scripts/limits_figures.py                       # everything (~15-30 min on 2 cores)
    .venv/bin/python scripts/limits_figures.py --sizes 1000000       # the long model at 1 MB only
    .venv/bin/python scripts/limits_figures.py --skip_long --server_args=--grpc-infer-allocation-pool-size=0

RSS is tritonserver's plus its Python stubs' (its child processes), from /proc, so shared memory that
both map is counted twice. Prints markdown tables.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from artifacts import make_checkpoint, make_tokenizer  # noqa: E402
from corpus import long_text  # noqa: E402
from servers import build_repository  # noqa: E402

BIG = ("--max_text_chars", "100000000", "--max_request_chars", "100000000", "--max_ensemble_request_chars",
       "100000000")


def tree_rss_mb(pid: int) -> float:
    """Resident memory of tritonserver and its Python stubs, MB."""
    from sat_triton.builder.processes import tree_rss_bytes

    return tree_rss_bytes(pid) / 2**20


class PeakRss:
    """Samples the tree's RSS every 50 ms while a request runs."""

    def __init__(self, pid):
        self.pid, self.peak, self._stop = pid, tree_rss_mb(pid), threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.wait(0.05):
            self.peak = max(self.peak, tree_rss_mb(self.pid))

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def infer(url, protocol, model, data, datatype="BYTES", parameters=None, inputs=True, timeout=None):
    module = __import__(f"tritonclient.{protocol}", fromlist=["InferInput"])
    client = (module.InferenceServerClient(url) if protocol == "grpc"
              else module.InferenceServerClient(url, connection_timeout=3600, network_timeout=3600))
    tensors = []
    if inputs:
        tensors = [module.InferInput("TEXT", list(data.shape), datatype)]
        tensors[0].set_data_from_numpy(data)
    kwargs = {"client_timeout": timeout} if timeout and protocol == "grpc" else {}
    try:
        return client.infer(model, tensors, parameters=parameters or {}, **kwargs)
    finally:
        client.close()


def encoded(*texts):
    return np.array([t.encode("utf-8") if isinstance(t, str) else t for t in texts], dtype=np.object_)


def bad_inputs():
    ten_mb, fifty_mb = "a " * 5_000_000, "a " * 25_000_000
    short = "Hello world. This is a test! How are you?"
    cases = []
    for size, text in (("10 MB", ten_mb), ("50 MB", fifty_mb)):
        for model in ("tiny", "tiny_long"):
            for protocol in ("grpc", "http"):
                cases.append((f"one {size} text", model, protocol, dict(data=encoded(text))))
    for model in ("tiny", "tiny_long"):
        cases += [
            ("10,000 tiny texts", model, "grpc", dict(data=encoded(*(["Hi. Yo."] * 10_000)))),
            ("missing TEXT", model, "grpc", dict(data=encoded(short), inputs=False)),
            ("empty TEXT tensor", model, "grpc", dict(data=encoded())),
            ("wrong dtype (INT32)", model, "grpc", dict(data=np.array([1, 2], dtype=np.int32), datatype="INT32")),
            ("wrong rank ([1, 2])", model, "grpc", dict(data=np.array([[b"a", b"b"]], dtype=np.object_))),
            ("not UTF-8", model, "grpc", dict(data=encoded(b"ok \xff\xfe"))),
            ("threshold NaN", model, "grpc", dict(data=encoded(short), parameters={"threshold": float("nan")})),
            ("threshold NaN over HTTP", model, "http", dict(data=encoded(short), parameters={"threshold": float("nan")})),
            ("stride inf", model, "grpc", dict(data=encoded(short), parameters={"stride": float("inf")})),
            ("stride -5", model, "grpc", dict(data=encoded(short), parameters={"stride": -5})),
            ("block_size 2**62", model, "grpc", dict(data=encoded(short), parameters={"block_size": 2**62})),
            ("min_length 1e8", model, "grpc", dict(data=encoded(short), parameters={"min_length": 10**8})),
            ("min_length 1e9", model, "grpc", dict(data=encoded(short), parameters={"min_length": 10**9})),
            ("min_length 2**62", model, "grpc", dict(data=encoded(short), parameters={"min_length": 2**62})),
            ("max_length 2**62", model, "grpc", dict(data=encoded(short), parameters={"max_length": 2**62})),
            ("unknown parameter", model, "grpc", dict(data=encoded(short), parameters={"temperature": 0.7})),
        ]
    return cases


def answer(result_or_exc) -> str:
    if isinstance(result_or_exc, Exception):
        status = getattr(result_or_exc, "status", lambda: "")() or type(result_or_exc).__name__
        message = getattr(result_or_exc, "message", lambda: str(result_or_exc))() or str(result_or_exc)
        return f"{status}: {message[:150]}".replace("|", "\\|").replace("\n", " ")
    counts = result_or_exc.as_numpy("SENTENCE_COUNTS")
    return f"200/OK: {len(counts)} texts, {int(counts.sum())} sentences"


def run_bad_inputs(server, pid):
    print("\n| input | model | protocol | answer | seconds | RSS before -> after (MB) |")
    print("|---|---|---|---|---:|---|")
    for what, model, protocol, request in bad_inputs():
        url = server.grpc_url if protocol == "grpc" else server.http_url
        before = tree_rss_mb(pid)
        start = time.monotonic()
        try:
            outcome = infer(url, protocol, model, **request)
        except Exception as exc:  # noqa: BLE001: every answer is reported
            outcome = exc
        elapsed = time.monotonic() - start
        time.sleep(0.5)
        print(f"| {what} | {model} | {protocol} | {answer(outcome)} | {elapsed:.2f} | {before:.0f} -> "
              f"{tree_rss_mb(pid):.0f} |", flush=True)
    ready = infer(server.grpc_url, "grpc", "tiny", encoded("Still serving. Yes.")).as_numpy("SENTENCE_COUNTS")
    print(f"\nafterwards the server still answers: {ready.tolist()}")


def run_long(server, pid, sizes, parameters):
    print(f"\nlong model (tiny_big_long, {parameters or 'default options'}):\n")
    print("| text | seconds | sentences | spans cover the text | RSS before | peak | after (MB) |")
    print("|---|---:|---:|---|---:|---:|---:|")
    for size in sizes:
        text = long_text(size, seed=5)
        before = tree_rss_mb(pid)
        start = time.monotonic()
        with PeakRss(pid) as peak:
            result = infer(server.grpc_url, "grpc", "tiny_big_long", encoded(text), parameters=parameters)
        elapsed = time.monotonic() - start
        spans, counts = result.as_numpy("SENTENCE_SPANS"), result.as_numpy("SENTENCE_COUNTS")
        del result
        covered = bool(len(spans)) and int(spans[0, 0]) == 0 and int(spans[-1, 1]) == len(text) and bool(
            np.all(spans[1:, 0] - spans[:-1, 1] <= 1))
        time.sleep(1.0)
        print(f"| {size:,} characters | {elapsed:.0f} | {int(counts.sum()):,} | {covered} | {before:.0f} | "
              f"{peak.peak:.0f} (+{peak.peak - before:.0f}) | {tree_rss_mb(pid):.0f} |", flush=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, help="where to build (default: a temporary directory)")
    parser.add_argument("--sizes", default="1000000,10000000", help="long-model text sizes (default: %(default)s)")
    parser.add_argument("--long_options", default='{"block_size": 128, "stride": 128}',
                        help="request parameters of the long-model runs, JSON (default: %(default)s)")
    parser.add_argument("--skip_bad_inputs", action="store_true", help="only the long-model runs")
    parser.add_argument("--skip_long", action="store_true", help="only the bad inputs")
    parser.add_argument("--server_args", action="append", default=[],
                        help="extra tritonserver arguments, e.g. --server_args=--grpc-infer-allocation-pool-size=0")
    parser.add_argument("--server_env", action="append", default=[],
                        help="extra environment for tritonserver, e.g. --server_env MALLOC_MMAP_THRESHOLD_=131072")
    args = parser.parse_args(argv)
    import json

    from sat_triton.builder.server import TritonServer, free_port

    with tempfile.TemporaryDirectory(prefix="sat-limits-") as tmp:
        work = args.workdir or Path(tmp)
        repo = work / "model_repository"
        if not (repo / "tiny_big_long").exists():
            tokenizer = make_tokenizer(work / "tokenizer")
            checkpoint = make_checkpoint(work / "tiny-sat-sm")
            build_repository(checkpoint, tokenizer, repo, "tiny", "--max_batch_size", "16")
            build_repository(checkpoint, tokenizer, repo, "tiny_big", "--max_batch_size", "16", *BIG)
        env = dict(item.split("=", 1) for item in args.server_env)
        server = TritonServer(repo, http_port=free_port(), grpc_port=free_port(), metrics_port=free_port(),
                              extra_args=["--exit-timeout-secs=5", *args.server_args], env=env)
        server.start()
        try:
            server.wait_ready(["tiny", "tiny_long", "tiny_big_long"], timeout=300)
            pid = getattr(server, "pid", None) or server._proc.pid
            print(f"tritonserver {' '.join(args.server_args) or '(default flags)'} {env or ''}; "
                  f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
            print(f"server RSS after start: {tree_rss_mb(pid):.0f} MB")
            if not args.skip_bad_inputs:
                run_bad_inputs(server, pid)
            if not args.skip_long:
                run_long(server, pid, [int(s) for s in args.sizes.split(",") if s],
                         json.loads(args.long_options) if args.long_options else {})
        finally:
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
