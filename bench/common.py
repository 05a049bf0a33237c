"""What every step of the benchmark shares: paths, names, the log line and small list helpers."""

from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GENERATOR_VERSION = 3  # bump when the generated artifacts change, so caches are rebuilt
SHORT_TEXT = "Hello world. This is a test! How are you? I'm fine, thanks."
TRITON_NAME = "sat_bench"
# GPU runs: requests of 1 to 128 texts from up to 64 concurrent clients (texts_per_request:clients)
GPU_SETTINGS = "1:1,1:16,8:16,32:16,32:64,128:16,128:64"
GPU_SWEEP_SETTINGS = "8:16,32:64,128:64"


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def chunks(items: list, size: int) -> list[list]:
    """``items`` in consecutive slices of ``size`` (the last one shorter)."""
    return [items[i:i + size] for i in range(0, len(items), size)]


def parse_list(text: str) -> list[int]:
    """``"1,8,32"`` -> ``[1, 8, 32]``."""
    return [int(x) for x in text.split(",") if x.strip()]


def parse_settings(text: str) -> list[tuple[int, int]]:
    """``"1:1,8:4"`` -> ``[(1, 1), (8, 4)]`` (texts per request, clients)."""
    return [tuple(int(x) for x in item.split(":")) for item in text.split(",") if item.strip()]
