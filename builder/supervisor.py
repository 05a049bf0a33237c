"""``sat-triton serve``: tritonserver under a supervisor that keeps it serving and says truthfully
whether it can.

What it adds to tritonserver 2.51 (docs/reliability.md has the measurements):

* **Truthful health** on its own port (:mod:`.health`): ready only while a request through every
  ensemble and long model would succeed (stub watch + canary requests, :mod:`.canary`).
* **Healing.** Triton 2.51 does not restart a Python stub that died, and keeps reporting its model
  ready. The supervisor sees a dead stub within ``POLL_S`` (it is tritonserver's child,
  :mod:`.processes`), or a canary that fails, turns readiness 503 and reloads only the broken model
  through Triton's repository API. That API is restricted to a header whose value is made per start
  and known only to the supervisor, so model control stays closed to clients as with mode ``none``.
  When a reload cannot heal (or with ``--model_control_mode none``), tritonserver is restarted.
* **No orphans.** tritonserver gets PR_SET_PDEATHSIG (SIGKILL): it dies with ``sat-triton serve``,
  even when serve is SIGKILLed, and its stubs follow it within about two seconds.
* **Drain.** On SIGTERM or SIGINT readiness turns 503 at once; the supervisor waits until no request is
  pending in any queue and no step uses CPU (at most ``--exit_timeout`` seconds), and only then
  stops tritonserver. It cannot leave that to Triton: on SIGTERM, Triton 2.51 refuses the next step of
  an ensemble request already in flight (UNAVAILABLE "Server is stopping") and the long model's BLS
  calls (INTERNAL "Server not ready"), and waits for open HTTP keep-alive connections first.
* **Loopback by default.** HTTP, gRPC, metrics and health bind to ``--host`` (127.0.0.1); Triton's
  logging, trace, model-repository and shared-memory APIs need the admin header.
"""

from __future__ import annotations

import json
import os
import queue
import secrets
import signal
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from . import canary, processes
from .errors import BuildError
from .health import LIVE_PATH, READY_PATH, HealthServer, HealthState
from .server import RESTRICTED_APIS, TritonServer, TritonServerError, url_host

ADMIN_HEADER = "sat-triton-admin-key"  # its value: a fresh secret per start
POLL_S = 0.25  # how often the main loop looks at tritonserver and its stubs
TRITON_EXIT_TIMEOUT_S = 5  # tritonserver's own --exit-timeout-secs, once the supervisor has drained
KILL_AFTER_S = 15  # after asking tritonserver to stop, SIGKILL it if it is still there
RESTART_ATTEMPTS = 5  # consecutive failed restarts before the supervisor gives up (exit 1)
LOAD_TIMEOUT_S = 180  # one model reload through the repository API
QUIET_SAMPLES, QUIET_EVERY_S = 3, 0.2  # drained: this many samples in a row with nothing in flight
UNREACHABLE_LIMIT = 2  # canaries in a row without an answer before tritonserver is restarted
# canary rounds in a row refused as overloaded while one of the target's steps executed nothing: a stalled
# batcher (Triton 2.51's batcher can miss a wake-up once a bounded queue is full; docs/reliability.md)
STALL_ROUNDS = 6
RECYCLE_CHECK_S = 2.0  # how often the stubs' shared-memory pools are measured
RECYCLE_EVERY_S = 60.0  # a model is recycled at most this often
# tritonserver's memory, so that it returns after an oversized request (docs/limits.md): no gRPC request
# messages kept for reuse (8 by default, each as large as the largest request it carried), and glibc
# allocations over 128 KiB on their own mappings, which go back to the system when freed
TRITON_MEMORY_ARGS = ["--grpc-infer-allocation-pool-size=0"]
TRITON_MEMORY_ENV = {"MALLOC_MMAP_THRESHOLD_": "131072"}


class ServeError(BuildError):
    """sat-triton serve cannot start or gave up; the message is the one line the user sees."""


@dataclass
class ServeOptions:
    host: str = "127.0.0.1"
    http_port: int = 8000
    grpc_port: int = 8001
    metrics_port: int = 8002
    health_port: int = 8003
    exit_timeout: float = 30.0
    model_control_mode: str = "explicit"
    startup_timeout: float = 300.0
    canary_interval: float = 5.0
    canary_timeout: float = 10.0
    log_verbose: int = 0
    log_file: str | None = None  # None: a new temporary file; "-": this process's stdout
    recycle_shm_mb: float = 16.0  # reload a Python model whose shared-memory pool grew past this; 0: never


def _say(message: str) -> None:
    print(f"sat-triton serve: {message}", flush=True)


class Supervisor:
    def __init__(self, repository: Path, options: ServeOptions):
        self.repository = Path(repository)
        self.opts = options
        self.models = sorted(p.parent.name for p in self.repository.glob("*/config.pbtxt"))
        if not self.models:
            raise ServeError(f"{repository} holds no model (no */config.pbtxt); build one with: sat-triton build ...")
        self.targets = canary.targets(self.repository)
        self.steps = {target: canary.steps(self.repository, target) for target in self.targets}
        self.state = HealthState(self.targets, canary_max_age=3 * options.canary_interval + options.canary_timeout)
        self._admin = (ADMIN_HEADER, secrets.token_urlsafe(32))
        extra = [f"--exit-timeout-secs={TRITON_EXIT_TIMEOUT_S}", *TRITON_MEMORY_ARGS]
        if options.model_control_mode == "explicit":
            extra.append("--load-model=*")
        log_file = None if options.log_file in (None, "-") else Path(options.log_file)
        self.triton = TritonServer(
            self.repository, http_port=options.http_port, grpc_port=options.grpc_port,
            metrics_port=options.metrics_port, log_verbose=options.log_verbose,
            model_control_mode=options.model_control_mode, extra_args=extra, log_file=log_file,
            env={key: os.environ.get(key, value) for key, value in TRITON_MEMORY_ENV.items()},
            host=options.host, admin_header=self._admin, die_with_parent=True, log_to_stdout=options.log_file == "-")
        self._stop = threading.Event()  # set by SIGTERM / SIGINT
        self._hurry = False  # a second signal: stop without draining
        self._generation = 0  # bumped by every heal: older canary verdicts no longer count
        self._verdicts: queue.Queue = queue.Queue()
        self._unreachable: dict[str, int] = {}
        self._stubs: dict[int, processes.Stub] = {}
        self._known_stubs: dict[int, processes.Stub] = {}  # every stub seen, for /dev/shm clean-up
        self._reloads = 0
        self._retired: set[int] = set()  # stubs of recycled models: their exit is not a fault
        self._recycled: dict[str, float] = {}  # model -> when it was last recycled
        self._pools_checked = 0.0

    # -- the run ---------------------------------------------------------------------------------
    def check_ports(self) -> None:
        for flag, port in (("http_port", self.opts.http_port), ("grpc_port", self.opts.grpc_port),
                           ("metrics_port", self.opts.metrics_port), ("health_port", self.opts.health_port)):
            if processes.port_in_use(self.opts.host, port):
                raise ServeError(f"port {port} on {self.opts.host} is already in use: pass another --{flag}")

    def run(self) -> int:
        """Serve until SIGTERM / SIGINT; then drain and stop. Call from the main thread."""
        self.check_ports()
        try:
            health = HealthServer(self.opts.host, self.opts.health_port, self.state).start()
        except OSError as exc:
            raise ServeError(f"cannot serve health on {self.opts.host}:{self.opts.health_port} ({exc}): "
                             "pass another --health_port") from None
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        canary_thread = threading.Thread(target=self._canary_loop, name="canary", daemon=True)
        try:
            try:
                self._start("starting", "starting tritonserver")
            except TritonServerError as exc:
                if self._stop.is_set():
                    return 0
                raise ServeError(str(exc)) from None
            self._print_ready(health.address)
            canary_thread.start()
            while not self._stop.is_set():
                self.state.beat()
                self._watch()
                self._recycle()
                processes.reap_zombies(keep={self.triton.pid} if self.triton.pid else set())
                self._stop.wait(POLL_S)
            self._drain()
            return 0
        finally:
            self._stop.set()
            code = self._stop_triton()
            self.state.set("stopped", "stopped")
            health.stop()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            print(f"tritonserver stopped (exit code {code})", flush=True)

    def _on_signal(self, signum, _frame) -> None:
        name = signal.Signals(signum).name
        if self._stop.is_set():
            self._hurry = True
            return
        self.state.set("draining", f"{name} received: draining in-flight requests "
                                   f"(at most {self.opts.exit_timeout:.0f}s), then stopping")
        self._stop.set()

    def _start(self, phase: str, why: str) -> None:
        """Start tritonserver, wait for every model, check every target with a canary."""
        self.state.set(phase, why)
        self.triton.start()
        self.triton.wait_ready(self.models, timeout=self.opts.startup_timeout, cancel=self._stop)
        failed = self._verify()
        if failed:
            raise TritonServerError(f"tritonserver is up but its canary requests fail: {failed}")
        self._snapshot()
        self._set_ready()

    def _set_ready(self) -> None:
        if not self._stop.is_set():  # a SIGTERM during a start or heal keeps readiness at 503 (draining)
            self.state.set("ready")

    def _print_ready(self, health_address) -> None:
        t = self.triton
        health = f"http://{url_host(self.opts.host)}:{self.opts.health_port}"
        # the addresses as bound (0.0.0.0 stays 0.0.0.0); the URLs above are where to connect
        bound = ", ".join(f"{_address(h)}:{p}" for h, p in processes.listening_addresses(t.pid))
        print(f"tritonserver ready: {', '.join(self.models)}")
        print(f"  gRPC     {t.grpc_url}")
        print(f"  HTTP     {t.http_url}")
        print(f"  metrics  http://{t.metrics_url}/metrics")
        print(f"  health   {health}{READY_PATH} (live: {LIVE_PATH})")
        print(f"  bound    tritonserver listens on {bound or '?'}; health on "
              f"{_address(health_address[0])}:{health_address[1]}")
        print(f"  log      {t.log_file if t.log_file else 'this terminal'}")
        print(f"  admin    Triton's {', '.join(RESTRICTED_APIS)} APIs: supervisor only")
        print("Ctrl-C stops it.", flush=True)

    # -- watching ----------------------------------------------------------------------------------
    def _snapshot(self) -> None:
        self._stubs = {s.pid: s for s in processes.python_stubs(self.triton.pid)}
        self._known_stubs.update(self._stubs)
        self._unreachable.clear()

    def _watch(self) -> None:
        if not self.triton.running:
            self._heal(set(), f"tritonserver exited (code {self.triton.returncode})", restart=True)
            return
        dead = [s for s in self._stubs.values() if s.pid not in self._retired and not processes.stub_alive(s)]
        if dead:
            names = sorted({s.model for s in dead})
            pids = ", ".join(str(s.pid) for s in dead)
            self._heal(set(names), f"the Python stub of {', '.join(names)} (pid {pids}) died", dead=dead)
            return
        while True:
            try:
                generation, target, verdict = self._verdicts.get_nowait()
            except queue.Empty:
                return
            if generation != self._generation:
                continue
            if verdict.kind == "broken":
                models = {verdict.model} if verdict.model else set()
                self._heal(models, f"canary through {target} failed: {verdict.message[:200]}", restart=not models)
                return
            if verdict.kind == "unreachable":
                self._unreachable[target] = self._unreachable.get(target, 0) + 1
                if self._unreachable[target] >= UNREACHABLE_LIMIT:
                    self._heal(set(), f"{target} did not answer {UNREACHABLE_LIMIT} canaries in a row "
                                      f"({verdict.message[:200]})", restart=True)
                    return

    def _recycle(self) -> None:
        """Reload a Python model whose stubs' shared-memory pool grew past ``--recycle_shm_mb``: the
        Python backend never shrinks a pool, so one oversized request (refused or not) would keep its
        size for good. Triton loads the new instances beside the serving ones and swaps them in, so
        readiness stays 200; at most once a minute per model."""
        now = time.monotonic()
        limit = self.opts.recycle_shm_mb * 2**20
        if (not limit or self.opts.model_control_mode != "explicit" or self.state.phase != "ready"
                or now - self._pools_checked < RECYCLE_CHECK_S):
            return
        self._pools_checked = now
        for pid in [pid for pid in self._retired if not processes.alive(pid)]:  # a recycled model's old stub ended
            self._retired.discard(pid)
            self._stubs.pop(pid, None)
        grown = processes.grown_pools(list(self._stubs.values()), limit)
        for model, size in sorted(grown.items()):
            if now - self._recycled.get(model, -RECYCLE_EVERY_S) < RECYCLE_EVERY_S or self._stop.is_set():
                continue
            self._recycled[model] = now
            _say(f"recycling {model}: its shared-memory pool grew to {size / 2**20:.0f} MB "
                 f"(--recycle_shm_mb {self.opts.recycle_shm_mb:g}); reloading it beside the serving instances")
            self._retired.update(s.pid for s in self._stubs.values() if s.model == model)
            started = time.monotonic()
            if self._load(model):
                self.state.recycled()
                _say(f"recycled {model} in {time.monotonic() - started:.1f}s")
            self._snapshot()

    def _canary_loop(self) -> None:
        stalled: dict[str, int] = {}  # canary rounds in a row refused as overloaded while one of its steps ran nothing
        executions: dict[str, int] = {}
        while not self._stop.wait(self.opts.canary_interval):
            if self.state.phase != "ready":
                stalled.clear()
                continue
            generation = self._generation
            before, executions = executions, canary.executions(self.triton.http_url)
            for target in self.targets:
                verdict = canary.send(self.triton.http_url, target, self.opts.canary_timeout)
                if generation != self._generation or self.state.phase != "ready" or self._stop.is_set():
                    break
                self.state.record(target, verdict)
                step = canary.stalled_step(self.steps[target], before, executions)
                stalled[target] = canary.stall_streak(stalled.get(target, 0), verdict, step)
                if stalled[target] >= STALL_ROUNDS:
                    stalled[target] = 0
                    verdict = canary.Verdict("broken", f"refused as overloaded for {STALL_ROUNDS} canaries in a row "
                                                       f"while {step} executed nothing: its batcher stalled", step)
                if verdict.kind == "ok":
                    self._unreachable.pop(target, None)
                elif verdict.kind != "overloaded":
                    self._verdicts.put((generation, target, verdict))

    def _verify(self) -> list[str]:
        """A canary through every target now; the failures (empty when all answered)."""
        failed = []
        for target in self.targets:
            verdict = canary.send(self.triton.http_url, target, self.opts.canary_timeout)
            self.state.record(target, verdict)
            if verdict.kind not in ("ok", "overloaded"):
                failed.append(f"{target}: {verdict.kind} {verdict.message[:200]}")
        return failed

    # -- healing -----------------------------------------------------------------------------------
    def _heal(self, models: set[str], reason: str, restart: bool = False, dead=()) -> None:
        started = time.monotonic()
        self._generation += 1
        reload = not restart and models and self.opts.model_control_mode == "explicit"
        self.state.set("healing", f"{reason}; " + (f"reloading {', '.join(sorted(models))}" if reload
                                                    else "restarting tritonserver"))
        _say(self.state.reason)
        healed, restarted = False, False
        if reload:
            healed = all(self._load(model) for model in sorted(models))
            failed = self._verify() if healed else ["reload failed"]
            healed = healed and not failed
            if not healed:
                _say(f"reloading did not heal it ({'; '.join(failed)[:300]}): restarting tritonserver")
        if not healed:
            restarted = True
            if not self._restart(reason):
                return  # stopping
        else:
            self._snapshot()
            self._set_ready()
        processes.remove_shm_regions(list(dead))
        seconds = time.monotonic() - started
        self.state.healed(seconds, restarted)
        _say(f"healed in {seconds:.1f}s ({'tritonserver restarted' if restarted else 'reloaded'}); ready")

    def _admin_request(self, path: str, body: dict | None = None, timeout: float = 10.0) -> dict:
        request = urllib.request.Request(
            f"http://{self.triton.http_url}{path}", data=None if body is None else json.dumps(body).encode(),
            method="GET" if body is None else "POST",
            headers={self._admin[0]: self._admin[1], "Content-Type": "application/json", "Connection": "close"})
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            raw = answer.read()
        return json.loads(raw) if raw.strip() else {}

    def _load(self, model: str) -> bool:
        """Reload ``model`` in place. A plain load of an unchanged model is a no-op in Triton 2.51 (it only
        updates instance counts, keeping the instance whose stub died), so the load carries the model's
        own config with one more parameter, ``sat_triton_reload``: a config change that needs a full
        reload, which Triton does beside the serving version and then swaps in."""
        self._reloads += 1
        try:
            config = self._admin_request(f"/v2/models/{model}/config")
            config.setdefault("parameters", {})["sat_triton_reload"] = {"string_value": str(self._reloads)}
            self._admin_request(f"/v2/repository/models/{model}/load",
                                {"parameters": {"config": json.dumps(config)}}, timeout=LOAD_TIMEOUT_S)
            return True
        except urllib.error.HTTPError as exc:
            _say(f"reloading {model} failed: HTTP {exc.code} {exc.read()[:300]!r}")
        except (OSError, ValueError) as exc:
            _say(f"reloading {model} failed: {exc}")
        return False

    def _restart(self, reason: str) -> bool:
        """Stop and start tritonserver until it serves again; False when a signal asked us to stop."""
        for attempt in range(1, RESTART_ATTEMPTS + 1):
            if self._stop.is_set():
                return False
            self._stop_triton()
            try:
                self._start("restarting", f"{reason}; restarting tritonserver (attempt {attempt})")
                return True
            except TritonServerError as exc:
                _say(f"restart {attempt} of {RESTART_ATTEMPTS} failed: {str(exc).splitlines()[0]}")
                if self._stop.wait(min(2 ** attempt, 30)):
                    return False
        self.state.set("failed", f"{reason}; tritonserver did not come back after {RESTART_ATTEMPTS} restarts")
        raise ServeError(self.state.reason)

    # -- stopping ----------------------------------------------------------------------------------
    def _drain(self) -> None:
        deadline = time.monotonic() + self.opts.exit_timeout
        _say(f"{self.state.reason}")
        started = time.monotonic()
        quiet, samples = 0, self._load_sample()
        while quiet < QUIET_SAMPLES and time.monotonic() < deadline and not self._hurry and self.triton.running:
            time.sleep(QUIET_EVERY_S)
            busy, samples = self._busy(samples)
            quiet = 0 if busy else quiet + 1
        if quiet >= QUIET_SAMPLES or not self.triton.running:
            _say(f"drained in {time.monotonic() - started:.1f}s; stopping tritonserver")
        else:
            _say(f"requests still in flight after {time.monotonic() - started:.1f}s; stopping tritonserver anyway")

    def _load_sample(self) -> dict[int, int]:
        pids = [self.triton.pid] + [s.pid for s in processes.python_stubs(self.triton.pid)] if self.triton.pid else []
        return {pid: processes.cpu_ticks(pid) for pid in pids}

    def _busy(self, before: dict[int, int]) -> tuple[bool, dict[int, int]]:
        """Anything in flight? Requests pending in a queue (Triton's pending-request gauge), or CPU used by
        a stub or by tritonserver since the last sample (an idle one uses none)."""
        after = self._load_sample()
        for pid, ticks in after.items():
            used = ticks - before.get(pid, ticks)
            if used >= (3 if pid == self.triton.pid else 1):
                return True, after
        return self._pending() > 0, after

    def _pending(self) -> int:
        try:
            with urllib.request.urlopen(f"http://{self.triton.metrics_url}/metrics", timeout=2) as answer:
                text = answer.read().decode(errors="replace")
        except OSError:
            return 0
        total = 0
        for line in text.splitlines():
            if line.startswith("nv_inference_pending_request_count{"):
                try:
                    total += int(float(line.rsplit(" ", 1)[1]))
                except ValueError:
                    pass
        return total

    def _stop_triton(self) -> int | None:
        """Ask tritonserver to stop (SIGINT), SIGKILL it after KILL_AFTER_S, clean up its stubs' /dev/shm."""
        if self.triton.pid is None:
            return None
        code = self.triton.stop(grace=KILL_AFTER_S)
        stubs = list(self._known_stubs.values())
        deadline = time.monotonic() + 5
        while any(processes.alive(s.pid) for s in stubs) and time.monotonic() < deadline:
            time.sleep(0.1)  # stubs of a killed tritonserver leave by themselves within ~2 s
        processes.remove_shm_regions(stubs)
        self._stubs.clear()
        return code


def serve(repository: Path, options: ServeOptions) -> int:
    return Supervisor(repository, options).run()


def health_json(url: str, timeout: float = 3.0) -> tuple[int, dict]:
    """GET a health endpoint: (HTTP status, JSON body); for tests and scripts."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def _address(host: str) -> str:
    """A bound address as printed: IPv6 in brackets, nothing rewritten."""
    return f"[{host}]" if ":" in host else host
