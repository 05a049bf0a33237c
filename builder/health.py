"""Truthful health for ``sat-triton serve``: the state the supervisor keeps, the endpoint that serves
it, and the ``sat-triton health`` check (standard library only).

``GET /v2/health/ready`` answers 200 only when a request through every ensemble and long model would
succeed now: tritonserver runs, every model loaded, no Python stub died, and the latest canary request
through each of them was answered (or refused only because the queue was full, which means busy, not
broken) within ``canary_max_age`` seconds. Otherwise 503, with a JSON body saying why (starting,
healing, restarting, draining, a failed or overdue canary). ``GET /v2/health/live`` answers 200 while
the supervisor runs and has not given up, including while it heals tritonserver.
"""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from .canary import Verdict

READY_PATH = "/v2/health/ready"
LIVE_PATH = "/v2/health/live"
_HEALTHY_VERDICTS = ("ok", "overloaded")
_LOOP_STALL_S = 30.0  # a main loop that has not ticked for this long while serving is not alive


class HealthState:
    """What the supervisor knows, shared between its threads. Phases: starting, ready, healing,
    restarting, draining, stopped, failed."""

    def __init__(self, targets: list[str], canary_max_age: float):
        self._lock = threading.RLock()  # RLock: the signal handler sets the phase from the main thread
        self.targets = list(targets)
        self.canary_max_age = canary_max_age
        self.phase, self.reason, self._since = "starting", "starting tritonserver", time.monotonic()
        self._canaries: dict[str, tuple[Verdict, float]] = {}
        self._beat = time.monotonic()
        self.heals = self.restarts = self.recycles = 0
        self.last_heal_s: float | None = None

    def set(self, phase: str, reason: str = "") -> None:
        with self._lock:
            self.phase, self.reason, self._since = phase, reason, time.monotonic()

    def record(self, model: str, verdict: Verdict) -> None:
        with self._lock:
            self._canaries[model] = (verdict, time.monotonic())

    def forget_canaries(self) -> None:
        with self._lock:
            self._canaries.clear()

    def healed(self, seconds: float, restarted: bool) -> None:
        with self._lock:
            self.heals += 1
            self.restarts += int(restarted)
            self.last_heal_s = seconds

    def recycled(self) -> None:
        with self._lock:
            self.recycles += 1

    def beat(self) -> None:
        self._beat = time.monotonic()

    def _canary_report(self, now: float) -> tuple[list[str], dict]:
        problems, report = [], {}
        for model in self.targets:
            entry = self._canaries.get(model)
            if entry is None:
                problems.append(f"{model}: no canary answer yet")
                report[model] = {"verdict": None}
                continue
            verdict, at = entry
            age = now - at
            report[model] = {"verdict": verdict.kind, "age_s": round(age, 1), "seconds": round(verdict.seconds, 3)}
            if verdict.message:
                report[model]["message"] = verdict.message[:300]
            if verdict.kind not in _HEALTHY_VERDICTS:
                problems.append(f"{model}: canary {verdict.kind}: {verdict.message[:200]}")
            elif age > self.canary_max_age:
                problems.append(f"{model}: last canary answer {age:.0f}s ago (overdue)")
        return problems, report

    def readiness(self) -> tuple[bool, dict]:
        now = time.monotonic()
        with self._lock:
            problems, report = self._canary_report(now)
            ready = self.phase == "ready" and not problems
            reason = self.reason if self.phase != "ready" else "; ".join(problems)
            body = {"ready": ready, "phase": self.phase, "reason": reason or "serving",
                    "for_s": round(now - self._since, 1), "canaries": report, "heals": self.heals,
                    "restarts": self.restarts, "recycles": self.recycles, "last_heal_s": self.last_heal_s}
        return ready, body

    def liveness(self) -> tuple[bool, dict]:
        now = time.monotonic()
        with self._lock:
            stalled = self.phase == "ready" and now - self._beat > _LOOP_STALL_S
            live = self.phase not in ("failed", "stopped") and not stalled
            reason = f"supervisor loop stalled for {now - self._beat:.0f}s" if stalled else self.reason
            return live, {"live": live, "phase": self.phase, "reason": reason or "serving"}


class _Handler(BaseHTTPRequestHandler):
    state: HealthState  # set on the subclass made per server

    def _answer(self, include_body: bool) -> None:
        path = self.path.split("?", 1)[0]
        if path == READY_PATH:
            ok, body = self.state.readiness()
        elif path == LIVE_PATH:
            ok, body = self.state.liveness()
        else:
            ok, body = False, {"error": f"unknown path {path}: use {READY_PATH} or {LIVE_PATH}"}
            self._send(404, body, include_body)
            return
        self._send(200 if ok else 503, body, include_body)

    def _send(self, status: int, body: dict, include_body: bool) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Connection", "close")
        self.end_headers()
        if include_body:
            self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self._answer(True)

    def do_HEAD(self) -> None:  # noqa: N802
        self._answer(False)

    def log_message(self, *args) -> None:  # probes every few seconds: keep the terminal quiet
        pass


class HealthServer:
    """``/v2/health/ready`` and ``/v2/health/live`` on ``host:port``, served from a daemon thread."""

    def __init__(self, host: str, port: int, state: HealthState):
        handler = type("HealthHandler", (_Handler,), {"state": state})
        server = type("HealthHTTPServer", (ThreadingHTTPServer,), {
            "address_family": socket.AF_INET6 if ":" in host else socket.AF_INET, "daemon_threads": True})
        self._server = server((host, port), handler)
        self.address = self._server.server_address[:2]
        self._thread = threading.Thread(target=self._server.serve_forever, name="health", daemon=True)

    def start(self) -> "HealthServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def check(url: str, timeout: float) -> tuple[bool, str]:
    """``sat-triton health``: (ready, one line saying why)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as answer:
            status, raw = answer.status, answer.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    except (urllib.error.URLError, OSError) as exc:
        return False, f"not ready: cannot reach {url} ({getattr(exc, 'reason', exc)})"
    try:
        body = json.loads(raw)
        reason = body.get("reason", "") if isinstance(body, dict) else ""
    except ValueError:
        reason = raw.decode(errors="replace")[:200]
    if status == 200:
        return True, f"ready: {reason or 'serving'}"
    return False, f"not ready (HTTP {status}): {reason}"
