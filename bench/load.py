"""Load generation against a served ensemble: closed loop and open loop, over gRPC (and HTTP).

Closed loop (what the benchmark's throughput table uses): N clients, each sending its next request
when the previous one is answered, so the offered load adapts to the server.

* :func:`drive_threads`: ``concurrency`` threads with a gRPC client each, over a list of requests
  (repeated until ``min_seconds`` passed); :func:`drive`: the same spread over client processes;
* :func:`drive_async`: one gRPC client with ``async_infer`` and at most N requests in flight;
* :func:`short_latency`: one call at a time, for the idle latency of a short text.

Open loop (what an operator's load test does, and what the capacity curve uses): requests go out at
a given rate whether or not the server keeps up, so past capacity queues grow, or the server refuses.

* :func:`open_loop` returns one :class:`Outcome` per request: when it was due, when it was sent, its
  latency and how it ended (``ok``, ``refused``, ``timeout``, ``unreachable``, ``wrong``, ``error``;
  :func:`classify` decides from the client's exception);
* :func:`arrival_times`: the schedule (Poisson or evenly spaced); :func:`summarise`: a run's
  throughput, percentiles and refusals (both pure, in :mod:`bench.outcomes`, re-exported here).

Every function takes the server's URL (``host:port``: the gRPC port, or the HTTP port with
``protocol="http"``) and the ensemble's name, and a request is a list of texts; nothing here starts
or stops a server. Import it with the repository root on ``sys.path`` (``bench`` is a folder of the
checkout, not part of the installed package).

    from bench.load import open_loop, summarise
    outcomes = open_loop("localhost:8001", "sat_3l_sm", [texts[i:i + 8] for i in range(0, 800, 8)],
                         rate=20, duration_s=30)
    print(summarise(outcomes, 30, 20))  # {'sent': ..., 'ok': ..., 'refused': ..., 'p99_ms': ...}
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Sequence

import numpy as np

from .outcomes import (ERROR, OK, REFUSED, STATUSES, TIMEOUT, UNREACHABLE, WRONG, Outcome, arrival_times, classify,
                       percentile, summarise)

__all__ = [  # the interface other scripts use (the reliability helper's load-and-fault script among them)
    "request_tensors", "unpack", "drive_threads", "drive", "drive_async", "short_latency", "open_loop",
    "Outcome", "classify", "arrival_times", "summarise", "percentile",
    "OK", "REFUSED", "TIMEOUT", "UNREACHABLE", "WRONG", "ERROR", "STATUSES",
]


# ------------------------------------------------------------------------------------------------
# Requests and answers
# ------------------------------------------------------------------------------------------------
def request_tensors(module, texts: list[str]):
    """The ``TEXT`` input and the requested outputs of one request, for ``module`` =
    ``tritonclient.grpc`` or ``tritonclient.http``."""
    data = np.array([t.encode("utf-8") for t in texts], dtype=np.object_)
    text_input = module.InferInput("TEXT", [len(texts)], "BYTES")
    text_input.set_data_from_numpy(data)
    outputs = [module.InferRequestedOutput("SENTENCES"), module.InferRequestedOutput("SENTENCE_COUNTS")]
    return text_input, outputs


def unpack(result) -> list[list[str]]:
    """Each text's sentences from an answer."""
    sentences = [s.decode("utf-8") for s in result.as_numpy("SENTENCES").tolist()]
    out, offset = [], 0
    for count in result.as_numpy("SENTENCE_COUNTS").tolist():
        out.append(sentences[offset:offset + count])
        offset += count
    return out


def _join(thread: threading.Thread) -> None:
    """``thread.join()`` in short waits: a signal that reaches one of gRPC's threads only runs its
    Python handler (Ctrl-C, ``timeout``'s SIGTERM) once the main thread is back in the interpreter."""
    while thread.is_alive():
        thread.join(0.2)


def _wait(event: threading.Event, timeout: float) -> bool:
    """``event.wait(timeout)`` in short waits, for the same reason as :func:`_join`."""
    deadline = time.perf_counter() + timeout
    while not event.wait(0.2):
        if time.perf_counter() >= deadline:
            return False
    return True


# ------------------------------------------------------------------------------------------------
# Closed loop
# ------------------------------------------------------------------------------------------------
def drive_threads(url: str, model: str, requests: list[list[str]], concurrency: int, min_seconds: float = 0.0):
    """``concurrency`` threads, each with its own gRPC client, send ``requests`` (repeated until
    ``min_seconds`` have passed, whole passes only). Returns wall seconds, latencies (ms), passes and the
    first pass's results."""
    import tritonclient.grpc as grpcclient

    clients = [grpcclient.InferenceServerClient(url=url) for _ in range(concurrency)]
    results: list = [None] * len(requests)
    latencies: list[float] = []
    lock = threading.Lock()
    state = {"next": 0, "pass": 0, "stop": False, "error": None}
    start_barrier = threading.Barrier(concurrency + 1)
    began = [0.0]

    def take():
        with lock:
            if state["stop"]:
                return None
            index = state["next"]
            if index >= len(requests):
                if time.perf_counter() - began[0] >= min_seconds:
                    state["stop"] = True
                    return None
                state["pass"] += 1
                index = 0
            state["next"] = index + 1
            return index, state["pass"]

    def worker(client):
        start_barrier.wait()
        while True:
            job = take()
            if job is None:
                return
            index, passno = job
            text_input, outputs = request_tensors(grpcclient, requests[index])
            t0 = time.perf_counter()
            try:
                result = client.infer(model, [text_input], outputs=outputs)
            except Exception as exc:  # surfaced after the run
                state["error"], state["stop"] = exc, True
                return
            elapsed = (time.perf_counter() - t0) * 1000
            with lock:
                latencies.append(elapsed)
            if passno == 0:
                results[index] = unpack(result)

    threads = [threading.Thread(target=worker, args=(c,), daemon=True) for c in clients]
    for t in threads:
        t.start()
    began[0] = time.perf_counter()
    start_barrier.wait()
    for t in threads:
        _join(t)
    wall = time.perf_counter() - began[0]
    for c in clients:
        c.close()
    if state["error"] is not None:
        raise state["error"]
    return wall, latencies, state["pass"] + 1, results


def _client_process(url, model, requests, threads, min_seconds, start_at, keep_results, queue):
    """One load-generating process (``drive``): waits for the common start, then runs ``drive_threads``."""
    time.sleep(max(0.0, start_at - time.time()))
    try:
        wall, latencies, passes, results = drive_threads(url, model, requests, threads, min_seconds)
        queue.put((wall, latencies, passes, results if keep_results else None, None))
    except Exception as exc:  # reported by the parent
        queue.put((0.0, [], 0, None, repr(exc)))


def drive(url: str, model: str, requests: list[list[str]], concurrency: int, min_seconds: float = 0.0,
          processes: int = 1):
    """``drive_threads`` spread over ``processes`` client processes (one Python process cannot build and
    parse gRPC requests fast enough to load a GPU server); each runs ``concurrency / processes`` threads
    over the whole request list. Returns wall seconds (the slowest process), all latencies, the total
    number of corpus passes and the first process' results."""
    processes = max(1, min(processes, concurrency))
    if processes == 1:
        return drive_threads(url, model, requests, concurrency, min_seconds)
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    start_at = time.time() + 3.0  # time for the children to start and import
    shares = [concurrency // processes + (i < concurrency % processes) for i in range(processes)]
    children = [context.Process(target=_client_process, daemon=True,
                                args=(url, model, requests, share, min_seconds, start_at, i == 0, queue))
                for i, share in enumerate(shares)]
    for child in children:
        child.start()
    outcomes = [queue.get(timeout=1800) for _ in children]
    for child in children:
        child.join()
    errors = [o[4] for o in outcomes if o[4]]
    if errors:
        raise RuntimeError(f"client process failed: {errors[0]}")
    results = next(o[3] for o in outcomes if o[3] is not None)
    return (max(o[0] for o in outcomes), [x for o in outcomes for x in o[1]], sum(o[2] for o in outcomes), results)


def drive_async(url: str, model: str, requests: list[list[str]], in_flight: int):
    """One gRPC client, ``async_infer`` with at most ``in_flight`` requests outstanding."""
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(url=url)
    slots = threading.Semaphore(in_flight)
    done = threading.Event()
    latencies: list[float] = []
    lock = threading.Lock()
    remaining = [len(requests)]
    errors = []

    def callback(t0, result=None, error=None):  # tritonclient calls callback(result=..., error=...)
        elapsed = (time.perf_counter() - t0) * 1000
        with lock:
            if error is not None:
                errors.append(error)
            latencies.append(elapsed)
            remaining[0] -= 1
            if remaining[0] == 0:
                done.set()
        slots.release()

    began = time.perf_counter()
    for texts in requests:
        slots.acquire()
        text_input, outputs = request_tensors(grpcclient, texts)
        t0 = time.perf_counter()
        client.async_infer(model, [text_input], callback=functools.partial(callback, t0), outputs=outputs)
    if not _wait(done, 1800):
        raise RuntimeError(f"async_infer: {remaining[0]} responses still missing after 30 minutes")
    wall = time.perf_counter() - began
    client.close()
    if errors:
        raise errors[0]
    return wall, latencies


def short_latency(call, n: int) -> list[float]:
    for _ in range(10):  # reach every instance once (first calls load kernels, pools)
        call()
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        call()
        out.append((time.perf_counter() - t0) * 1000)
    return out


# ------------------------------------------------------------------------------------------------
# Open loop: requests at a given offered rate, whatever the server does with them
# ------------------------------------------------------------------------------------------------
def open_loop(url: str, model: str, requests: Sequence[list[str]], rate: float, duration_s: float, *,
              protocol: str = "grpc", arrivals: str = "poisson", seed: int = 0, timeout_s: float = 60.0,
              max_in_flight: int | None = None, parameters: dict | None = None,
              expected: Sequence[list[list[str]]] | None = None, processes: int = 1) -> list[Outcome]:
    """Send requests at ``rate`` requests/s for ``duration_s`` seconds, each when it is due whether or not
    earlier ones were answered (as an operator's load test does), and return every request's outcome in
    order of due time. Request ``i`` sends the texts ``requests[i % len(requests)]``.

    ``protocol``: ``grpc`` (one client, ``async_infer``) or ``http`` (a pool of ``max_in_flight`` threads
    with a client each). ``timeout_s``: the client's deadline per request. ``max_in_flight``: most
    requests outstanding at once (default 1024 for gRPC, 64 for HTTP); past it, due requests wait in the
    client and their wait shows as ``sent_s - scheduled_s``. ``parameters``: Triton request parameters
    (``split`` options). ``expected``: per request, the sentences of each of its texts; an answer that
    differs is ``wrong``. ``processes``: spread the rate over this many client processes (one Python
    process cannot build requests fast enough for thousands per second).
    """
    if protocol not in ("grpc", "http"):
        raise ValueError(f"protocol must be 'grpc' or 'http', got {protocol!r}")
    job = dict(url=url, model=model, requests=list(requests), duration_s=duration_s, protocol=protocol,
               arrivals=arrivals, timeout_s=timeout_s, parameters=parameters,
               max_in_flight=max_in_flight or (1024 if protocol == "grpc" else 64),
               expected=list(expected) if expected is not None else None)
    if processes <= 1:
        return _open_loop_once(rate=rate, seed=seed, start_at=None, **job)
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    with context.Pool(processes) as pool:
        start_at = time.time() + 3.0  # time for the children to start and import
        parts = pool.starmap(_open_loop_child, [({**job, "rate": rate / processes, "seed": seed + i,
                                                   "start_at": start_at},) for i in range(processes)])
    return sorted((o for part in parts for o in part), key=lambda o: o.scheduled_s)


def _open_loop_child(job: dict) -> list[Outcome]:
    return _open_loop_once(**job)


def _open_loop_once(url, model, requests, rate, duration_s, protocol, arrivals, seed, timeout_s, max_in_flight,
                    parameters, expected, start_at) -> list[Outcome]:
    times = arrival_times(rate, duration_s, arrivals, seed)
    outcomes: list[Outcome | None] = [None] * len(times)
    slots = threading.BoundedSemaphore(max_in_flight)
    lock = threading.Lock()
    remaining = [len(times)]
    finished = threading.Event()
    if not len(times):
        finished.set()

    def record(i: int, sent: float, result=None, error=None) -> None:
        latency = (time.perf_counter() - t0 - sent) * 1000.0
        status, detail = (OK, "") if error is None else classify(error)
        if error is None and expected is not None:
            want = expected[i % len(expected)]
            if unpack(result) != want:
                status, detail = WRONG, "sentences differ from the expected ones"
        outcomes[i] = Outcome(float(times[i]), sent, latency, status, detail)
        slots.release()
        with lock:
            remaining[0] -= 1
            if remaining[0] == 0:
                finished.set()

    if protocol == "grpc":
        import tritonclient.grpc as module

        client = module.InferenceServerClient(url=url)
        try:  # opens the channel now, not on the first due request
            client.is_server_live()
        except Exception:  # no server: every request will say so
            pass
        tensors = [request_tensors(module, texts) for texts in requests]

        def send(i: int, sent: float) -> None:
            text_input, outputs = tensors[i % len(tensors)]
            client.async_infer(model, [text_input], callback=functools.partial(record, i, sent), outputs=outputs,
                               client_timeout=timeout_s, parameters=parameters)
    else:
        import tritonclient.http as module
        from concurrent.futures import ThreadPoolExecutor

        local = threading.local()
        pool = ThreadPoolExecutor(max_in_flight)

        def call(i: int) -> None:
            if not hasattr(local, "client"):
                local.client = module.InferenceServerClient(url=url, connection_timeout=timeout_s,
                                                            network_timeout=timeout_s)
            sent = time.perf_counter() - t0
            text_input, outputs = request_tensors(module, requests[i % len(requests)])
            try:
                result = local.client.infer(model, [text_input], outputs=outputs, parameters=parameters)
            except Exception as exc:  # recorded as the request's outcome
                record(i, sent, error=exc)
                return
            record(i, sent, result=result)

        def send(i: int, sent: float) -> None:
            pool.submit(call, i)

    if start_at is not None:
        time.sleep(max(0.0, start_at - time.time()))
    t0 = time.perf_counter()
    for i, due in enumerate(times):
        delay = t0 + due - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        slots.acquire()
        sent = time.perf_counter() - t0
        try:
            send(i, sent)
        except Exception as exc:  # the client library refused to send it
            record(i, sent, error=exc)
    _wait(finished, timeout_s + 30.0)
    if protocol == "grpc":
        client.close()
    else:
        pool.shutdown(wait=False, cancel_futures=True)
    with lock:  # requests the client never answered within its deadline (+30 s) count as timeouts
        return [o or Outcome(float(times[i]), float(times[i]), (time.perf_counter() - t0 - times[i]) * 1000.0,
                             TIMEOUT, "no answer from the client library")
                for i, o in enumerate(outcomes)]
