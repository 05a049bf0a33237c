#!/usr/bin/env python
"""The CPU targets over several runs: ``bench/benchmark.py --quick`` N times, the targets' ratios of
each run and their spread (min / median / max), against 1.2x wtpsplit's best in-process mode and
0.95 of the ONNX model alone.

    python bench/spread.py                      # 3 runs here (~4-5 minutes each on 2 cores)
    python bench/spread.py --fresh_clone        # in a fresh clone of HEAD: scripts/setup.sh, then 3 runs
    python bench/spread.py --runs 5 -- --onnx_instance_count 1    # flags after -- go to every run

With --fresh_clone the clone (of the committed HEAD: uncommitted changes are not in it) gets its own
.venv from scripts/setup.sh and generates the benchmark's artifacts in its first run, as a new user's
checkout does.
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
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Sequence  # noqa: E402

# target: (what it is, the bar a run must reach)
TARGETS = {
    "vs_wtpsplit_raw": ("server best / wtpsplit best in-process, raw chars/s", 1.2),
    "vs_wtpsplit_normalised": ("server best / wtpsplit best in-process, probe-normalised", 1.2),
    "vs_alone_raw": ("server best / ONNX model alone, raw chars/s", 0.95),
    "vs_alone_normalised": ("server best / ONNX model alone, probe-normalised", 0.95),
}


def spread(runs: Sequence[dict]) -> dict[str, dict]:
    """Per target: each run's value, min / median / max, and how many runs reached its bar."""
    out = {}
    for key, (label, bar) in TARGETS.items():
        values = [run[key] for run in runs if run.get(key) is not None]
        if not values:
            continue
        out[key] = {"label": label, "bar": bar, "values": values, "min": min(values),
                    "median": statistics.median(values), "max": max(values),
                    "met": sum(v >= bar for v in values), "runs": len(values)}
    return out


def spread_text(summary: dict[str, dict]) -> str:
    lines = []
    for item in summary.values():
        values = ", ".join(f"{v:.2f}" for v in item["values"])
        lines.append(f"{item['label']}: {values}  (min {item['min']:.2f}, median {item['median']:.2f}, "
                     f"max {item['max']:.2f}; >= {item['bar']} in {item['met']} of {item['runs']} runs)")
    return "\n".join(lines)


def fresh_clone(into: Path) -> Path:
    """A clone of this checkout's HEAD with its own .venv (scripts/setup.sh)."""
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True,
                           text=True).stdout.strip()
    if dirty:
        print("note: uncommitted changes are not in the clone", file=sys.stderr)
    clone = into / "sat-triton"
    subprocess.run(["git", "clone", "--quiet", "--no-hardlinks", str(ROOT), str(clone)], check=True)
    started = time.perf_counter()
    subprocess.run(["bash", "scripts/setup.sh"], cwd=clone, check=True)
    print(f"fresh clone at {clone}, set up in {time.perf_counter() - started:.0f}s", file=sys.stderr)
    return clone


def run_once(checkout: Path, python: Path, extra: list[str], log: Path) -> dict:
    """One ``benchmark.py --quick`` in ``checkout``; its result file's targets and where it is."""
    work = checkout / "bench" / ".work"
    before = set((work / "results").glob("bench-*.json")) if (work / "results").is_dir() else set()
    with log.open("w") as out:
        done = subprocess.run([str(python), "bench/benchmark.py", "--quick", "--work_dir", str(work), *extra],
                              cwd=checkout, stdout=out, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        raise SystemExit(f"benchmark run failed (exit {done.returncode}); its output: {log}")
    (result,) = set((work / "results").glob("bench-*.json")) - before
    kept = ROOT / "bench" / ".work" / "results" / f"spread-{result.name}"
    kept.parent.mkdir(parents=True, exist_ok=True)
    if result != kept:
        kept.write_bytes(result.read_bytes())  # outlives a fresh clone's temporary directory
    data = json.loads(result.read_text())
    return {**data.get("targets", {}), "result": str(kept), "elapsed_s": data.get("elapsed_s")}


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[:argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--runs", type=int, default=3, help="benchmark runs (default: %(default)s)")
    parser.add_argument("--fresh_clone", action="store_true",
                        help="run in a fresh clone of HEAD with its own setup (default: this checkout)")
    parser.add_argument("--keep", action="store_true", help="keep the fresh clone (default: removed)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="sat-triton-spread-") as tmp:
        checkout = fresh_clone(Path(tmp)) if args.fresh_clone else ROOT
        python = checkout / ".venv" / "bin" / "python"
        runs = []
        for i in range(args.runs):
            log = Path(tmp) / f"run-{i + 1}.log"
            print(f"run {i + 1}/{args.runs} (log {log}) ...", file=sys.stderr, flush=True)
            runs.append(run_once(checkout, python, extra, log))
            print(f"run {i + 1}: " + ", ".join(f"{k} {v:.2f}" for k, v in runs[-1].items() if k in TARGETS),
                  flush=True)
        summary = spread(runs)
        print("\n" + spread_text(summary))
        print(json.dumps({"runs": runs, "spread": summary}, indent=1))
        if args.keep and args.fresh_clone:
            kept = Path(tempfile.mkdtemp(prefix="sat-triton-fresh-"))
            subprocess.run(["cp", "-a", str(checkout), str(kept)], check=True)
            print(f"clone kept at {kept / checkout.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
