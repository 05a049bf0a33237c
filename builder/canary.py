"""A canary request through a served model, and what its answer says about the server.

The supervisor sends one short text through every ensemble and every ``<name>_long`` model, over
Triton's HTTP/JSON protocol (standard library only), and sorts the answer into one of four verdicts:

* ``ok``: the model answered with sentences;
* ``overloaded``: the bounded queue refused it (UNAVAILABLE / 503 "Exceeds maximum queue size" or
  "Request timeout expired"; through the long model's BLS call the same text arrives as INTERNAL):
  the server works and is full; that is no reason to heal it;
* ``broken``: any other error, such as INTERNAL "Stub process '<model>_0_0' is not healthy" (then
  ``model`` names the broken model), a model that is not loaded, or an answer without sentences;
* ``unreachable``: no answer (connection refused, or nothing within the timeout).
"""

from __future__ import annotations

import json
import re
import socket
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from sat_triton.pipeline import wire

CANARY_TEXT = "Canary. Still serving?"
_OVERLOADED = ("Exceeds maximum queue size", "Request timeout expired")
_STOPPING = "Server is stopping"
_UNHEALTHY_STUB = re.compile(r"Stub process '(?P<instance>[^']+)' is not healthy")
_INSTANCE_SUFFIX = re.compile(r"_\d+_\d+$")  # Triton's instance names: <model>_<group>_<index>


@dataclass(frozen=True)
class Verdict:
    kind: str  # ok | overloaded | broken | unreachable
    message: str = ""
    model: str | None = None  # the broken model, when the error names it
    seconds: float = 0.0


def targets(repository: Path) -> list[str]:
    """The models a client calls: every ensemble, and every ``<ensemble>_long`` beside it."""
    found = []
    for config in sorted(Path(repository).glob("*/config.pbtxt")):
        if re.search(r'^\s*platform\s*:\s*"ensemble"', config.read_text(encoding="utf-8", errors="replace"), re.M):
            found.append(config.parent.name)
            long_model = config.parent.parent / f"{config.parent.name}_long"
            if (long_model / "config.pbtxt").is_file():
                found.append(long_model.name)
    return found


def onnx_model(target: str) -> str:
    """The ONNX step behind a target: ``<ensemble>_onnx`` for the ensemble and for ``<ensemble>_long``."""
    return f"{target[:-5] if target.endswith('_long') else target}_onnx"


def steps(repository: Path, target: str) -> list[str]:
    """The models a request to ``target`` runs through, in order: an ensemble's steps as its config lists
    them (tokenizer, ONNX, postprocessor); ``<name>_long`` itself, then its ONNX step."""
    if target.endswith("_long"):
        return [target, onnx_model(target)]
    config = (Path(repository) / target / "config.pbtxt").read_text(encoding="utf-8", errors="replace")
    return re.findall(r'model_name\s*:\s*"([^"]+)"', config) or [onnx_model(target)]


def executions(http_url: str, timeout: float = 5.0) -> dict[str, int]:
    """Model executions so far, per model (Triton's statistics API); empty when it does not answer."""
    try:
        with urllib.request.urlopen(f"http://{http_url}/v2/models/stats", timeout=timeout) as answer:
            stats = json.loads(answer.read()).get("model_stats", [])
    except (OSError, ValueError):
        return {}
    found: dict[str, int] = {}
    for entry in stats:
        found[entry["name"]] = found.get(entry["name"], 0) + int(entry.get("execution_count", 0))
    return found


def stalled_step(models: list[str], before: dict[str, int], now: dict[str, int]) -> str | None:
    """The first of ``models`` (a target's steps, in order) that executed nothing between two statistics
    snapshots; None when each ran something, or without statistics. Steps after it may be idle only because
    nothing reaches them."""
    for model in models:
        if model in before and model in now and now[model] == before[model]:
            return model
    return None


def stall_streak(streak: int, verdict: Verdict, stalled: str | None) -> int:
    """Canary rounds in a row that a target was refused as overloaded while one of its steps executed
    nothing (:func:`stalled_step`): a full queue that does not move is a stalled step, not a busy one
    (Triton 2.51's batcher can miss a wake-up once a queue is full; docs/reliability.md)."""
    return streak + 1 if verdict.kind == "overloaded" and stalled is not None else 0


def classify(status: int, message: str) -> Verdict:
    """The verdict for a Triton HTTP error answer (status and its ``error`` text)."""
    if any(text in message for text in _OVERLOADED):  # the long model passes its BLS refusals on as INTERNAL
        return Verdict("overloaded", message)
    if status == 503 and _STOPPING in message:
        return Verdict("unreachable", message)
    found = _UNHEALTHY_STUB.search(message)
    model = _INSTANCE_SUFFIX.sub("", found.group("instance")) if found else None
    return Verdict("broken", f"HTTP {status}: {message}", model)


def send(http_url: str, model: str, timeout: float) -> Verdict:
    """One canary request to ``model`` at ``http_url`` (host:port)."""
    body = json.dumps({
        "inputs": [{"name": wire.TEXT, "shape": [1], "datatype": "BYTES", "data": [CANARY_TEXT]}],
        "outputs": [{"name": wire.SENTENCE_COUNTS}],
    }).encode()
    request = urllib.request.Request(f"http://{http_url}/v2/models/{model}/infer", data=body, method="POST",
                                     headers={"Content-Type": "application/json", "Connection": "close"})
    started = time.monotonic()
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            payload = json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        try:
            message = json.loads(exc.read()).get("error", "")
        except (ValueError, OSError):
            message = exc.reason or ""
        return _timed(classify(exc.code, str(message)), started)
    except (urllib.error.URLError, socket.timeout, ConnectionError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        return _timed(Verdict("unreachable", f"{type(reason).__name__}: {reason}"), started)
    except ValueError as exc:
        return _timed(Verdict("broken", f"answer is not JSON: {exc}", model), started)
    counts = [o.get("data") for o in payload.get("outputs", []) if o.get("name") == wire.SENTENCE_COUNTS]
    if not counts or len(counts[0]) != 1 or not counts[0][0] >= 1:
        return _timed(Verdict("broken", f"answer without sentences: {str(payload)[:200]}", model), started)
    return _timed(Verdict("ok"), started)


def _timed(verdict: Verdict, started: float) -> Verdict:
    return Verdict(verdict.kind, verdict.message, verdict.model, time.monotonic() - started)
