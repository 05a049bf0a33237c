"""The autoscaling signal on a real Prometheus (Debian's 2.42, scripts/setup-tools.sh installs it).

Prometheus runs on loopback with its own temporary storage, the shipped scrape job (its Kubernetes
service discovery pointed at a stand-in API server on loopback that lists one pod: the rendered cpu
overlay's pod template, its ports renumbered to a live tritonserver's) and the shipped recording rules.
A bounded load from loopback runs below and then past capacity, and the exact query that
prometheus-adapter sends for the HPA's metric is evaluated through Prometheus' HTTP API, beside the
rule it replaces (queue time per request of the ONNX step only).

Also here: promtool on the shipped config and rules, and every metric name that docs/ and deploy/
mention checked against a live /metrics scrape."""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
PROMETHEUS = ROOT / "deploy" / "prometheus"
K8S = ROOT / "deploy" / "kubernetes"
RULES = PROMETHEUS / "sat-triton-rules.yaml"
PROMETHEUS_RULE = K8S / "components" / "prometheus-operator" / "prometheusrule.yaml"
NAMESPACE = "sat-triton"
POD = "sat-triton-5d8c7b9f6-x2x7q"
# Metrics only a server with GPUs reports.
GPU_ONLY_METRIC = re.compile(r"^nv_(gpu|energy)_")
# The adapter rule this signal replaces (before this change): queue time per request, ONNX step only.
OLD_ONNX_ONLY_RULE = (
    'sum by (<<.GroupBy>>) (rate(nv_inference_queue_duration_us{<<.LabelMatchers>>,model=~".+_onnx"}[1m])) / '
    'clamp_min(sum by (<<.GroupBy>>) (rate(nv_inference_request_success{<<.LabelMatchers>>,model=~".+_onnx"}[1m])), '
    "0.001)")
OLD_TARGET_US = 20000.0  # its HPA target: 20 ms queued per request


# -- shipped files ---------------------------------------------------------------------------------
def adapter_rule() -> dict:
    values = yaml.safe_load((PROMETHEUS / "prometheus-adapter-values.yaml").read_text())
    assert values["rules"]["default"] is False
    (rule,) = values["rules"]["custom"]
    return rule


def hpa() -> dict:
    return yaml.safe_load((K8S / "base" / "hpa.yaml").read_text())


def hpa_target() -> float:
    (metric,) = hpa()["spec"]["metrics"]
    assert metric["pods"]["target"]["type"] == "AverageValue"
    return float(metric["pods"]["target"]["averageValue"])


def rule_series(rule: dict) -> str:
    """The series the adapter rule discovers (its seriesQuery's metric name)."""
    return re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", rule["seriesQuery"])[0]


def expand_adapter_template(query: str, series: str, pods: list[str], namespace: str = NAMESPACE) -> str:
    """What prometheus-adapter (pkg/naming/metrics_query.go) sends for a namespaced pods request: the
    namespace matcher first, then the pod names (= for one, =~ joined with | for several), grouped by pod."""
    pod_matcher = f'pod="{pods[0]}"' if len(pods) == 1 else f'pod=~"{"|".join(pods)}"'
    return (query.replace("<<.Series>>", series)
            .replace("<<.LabelMatchers>>", f'namespace="{namespace}",{pod_matcher}')
            .replace("<<.GroupBy>>", "pod"))


def promtool() -> str:
    found = shutil.which("promtool")
    if not found:
        pytest.skip("promtool not found: Debian's prometheus package (bash scripts/setup-tools.sh)")
    return found


def prometheus_config(scrape_job: dict, rule_files: list[Path], interval: str = "15s") -> dict:
    return {"global": {"scrape_interval": interval, "evaluation_interval": interval},
            "rule_files": [str(p) for p in rule_files], "scrape_configs": [scrape_job]}


def promtool_check(tmp_path: Path, what: str, path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([promtool(), "check", what, str(path)], capture_output=True, text=True, timeout=60,
                          cwd=tmp_path)


# -- promtool ----------------------------------------------------------------------------------------
def test_promtool_accepts_the_scrape_job_and_the_rules(tmp_path):
    """Everything but the Kubernetes discovery key, which Debian's promtool does not know (see with_file_sd)."""
    job = with_file_sd(yaml.safe_load((PROMETHEUS / "scrape-config.yaml").read_text()), tmp_path / "pods.json")
    config = tmp_path / "prometheus.yml"
    config.write_text(yaml.safe_dump(prometheus_config(job, [RULES])))
    done = promtool_check(tmp_path, "config", config)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 rules found" in done.stdout + done.stderr  # it loaded the rule file too

    done = promtool_check(tmp_path, "rules", RULES)
    assert done.returncode == 0, done.stdout + done.stderr


def test_promtool_accepts_the_operators_rules_which_equal_the_rules_file(tmp_path):
    """The PrometheusRule (no Kubernetes schema knows it) carries the rules file's groups; promtool checks them."""
    operator_rule = yaml.safe_load(PROMETHEUS_RULE.read_text())
    assert (operator_rule["apiVersion"], operator_rule["kind"]) == ("monitoring.coreos.com/v1", "PrometheusRule")
    assert operator_rule["spec"] == yaml.safe_load(RULES.read_text())
    groups = tmp_path / "groups.yaml"
    groups.write_text(yaml.safe_dump(operator_rule["spec"]))
    done = promtool_check(tmp_path, "rules", groups)
    assert done.returncode == 0, done.stdout + done.stderr


def test_promtool_rejects_a_broken_config_and_rule(tmp_path):
    job = with_file_sd(yaml.safe_load((PROMETHEUS / "scrape-config.yaml").read_text()), tmp_path / "pods.json")
    job["relabel_configs"][0]["action"] = "keepp"
    config = tmp_path / "prometheus.yml"
    config.write_text(yaml.safe_dump(prometheus_config(job, [])))
    assert promtool_check(tmp_path, "config", config).returncode != 0
    rules = yaml.safe_load(RULES.read_text())
    rules["groups"][0]["rules"][0]["expr"] = "sum by (pod (rate(x[1m]))"
    broken = tmp_path / "rules.yaml"
    broken.write_text(yaml.safe_dump(rules))
    assert promtool_check(tmp_path, "rules", broken).returncode != 0


def test_adapter_rule_reads_the_recording_rule_the_hpa_names():
    rule = adapter_rule()
    recorded = {r["record"] for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]}
    series = rule_series(rule)
    assert series in recorded, f"the adapter discovers {series}, which no shipped rule records"
    assert re.fullmatch(rule["name"]["matches"], series)
    (metric,) = hpa()["spec"]["metrics"]
    assert metric["pods"]["metric"]["name"] == rule["name"]["as"]
    assert set(rule["resources"]["overrides"]) == {"namespace", "pod"}


# -- Kubernetes pod discovery, for a Prometheus built without it ------------------------------------------
# Debian's prometheus 2.42 is built without kubernetes_sd (its client-go is not packaged), so its promtool
# refuses the key and its server cannot discover pods. The tests hand it, through file_sd, the targets that
# role `pod` makes (Prometheus' documentation of kubernetes_sd_config: one target per declared port of each
# container, address podIP:port, and these __meta_kubernetes_pod_* labels); the shipped job's relabeling
# then runs verbatim on a real Prometheus.
def with_file_sd(job: dict, targets_file: Path) -> dict:
    """The shipped job with its Kubernetes discovery swapped for a file of the same targets."""
    job = json.loads(json.dumps(job))
    (kubernetes_sd,) = job.pop("kubernetes_sd_configs")
    assert kubernetes_sd == {"role": "pod", "namespaces": {"names": [NAMESPACE]}}, kubernetes_sd
    job["file_sd_configs"] = [{"files": [str(targets_file)], "refresh_interval": "1s"}]
    return job


def pod_role_targets(pod: dict) -> list[dict]:
    """What kubernetes_sd_configs role `pod` discovers for ``pod``, as file_sd target groups."""
    meta = pod["metadata"]
    common = {"__meta_kubernetes_namespace": meta["namespace"], "__meta_kubernetes_pod_name": meta["name"],
              "__meta_kubernetes_pod_ip": pod["status"]["podIP"], "__meta_kubernetes_pod_uid": meta["uid"],
              "__meta_kubernetes_pod_phase": pod["status"]["phase"],
              "__meta_kubernetes_pod_node_name": pod["spec"]["nodeName"],
              "__meta_kubernetes_pod_host_ip": pod["status"]["hostIP"],
              "__meta_kubernetes_pod_ready": "true"}
    sanitize = lambda name: re.sub(r"[^a-zA-Z0-9_]", "_", name)  # noqa: E731
    for key, value in meta.get("labels", {}).items():
        common[f"__meta_kubernetes_pod_label_{sanitize(key)}"] = value
        common[f"__meta_kubernetes_pod_labelpresent_{sanitize(key)}"] = "true"
    for key, value in meta.get("annotations", {}).items():
        common[f"__meta_kubernetes_pod_annotation_{sanitize(key)}"] = value
    groups = []
    for init, containers in (("false", pod["spec"]["containers"]), ("true", pod["spec"].get("initContainers", []))):
        for container in containers:
            labels = {**common, "__meta_kubernetes_pod_container_name": container["name"],
                      "__meta_kubernetes_pod_container_image": container["image"],
                      "__meta_kubernetes_pod_container_init": init}
            ports = container.get("ports", [])
            if not ports:
                groups.append({"targets": [pod["status"]["podIP"]], "labels": labels})
            for port in ports:
                groups.append({"targets": [f"{pod['status']['podIP']}:{port['containerPort']}"], "labels": {
                    **labels, "__meta_kubernetes_pod_container_port_name": port.get("name", ""),
                    "__meta_kubernetes_pod_container_port_number": str(port["containerPort"]),
                    "__meta_kubernetes_pod_container_port_protocol": port.get("protocol", "TCP")}})
    return groups


def running_pod(deployment: dict, ports: dict[str, int]) -> dict:
    """The Deployment's pod as it runs on 127.0.0.1, each container port renumbered to where the local
    server listens (the scrape job selects ports by name, not number)."""
    template = json.loads(json.dumps(deployment["spec"]["template"]))
    for container in template["spec"]["containers"]:
        for port in container.get("ports", []):
            port["containerPort"] = ports[port["name"]]
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {**template["metadata"], "name": POD, "namespace": NAMESPACE,
                     "uid": "0b7c0a52-4a44-4e0b-9d53-6f1f2e8f5a10"},
        "spec": {**template["spec"], "nodeName": "node-a"},
        "status": {"phase": "Running", "podIP": "127.0.0.1", "hostIP": "127.0.0.1"},
    }


# -- Prometheus on loopback ----------------------------------------------------------------------------
class Prometheus:
    def __init__(self, workdir: Path, config: dict):
        from sat_triton.builder.server import free_port

        binary = shutil.which("prometheus")
        if not binary:
            pytest.skip("prometheus not found: Debian's prometheus package (bash scripts/setup-tools.sh)")
        self.port = free_port()
        (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.log = open(workdir / "prometheus.log", "wb")
        self.proc = subprocess.Popen(
            [binary, f"--config.file={workdir / 'prometheus.yml'}", f"--storage.tsdb.path={workdir / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--storage.tsdb.retention.time=1h"],
            stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.workdir = workdir

    def api(self, path: str, **params) -> dict:
        url = f"http://127.0.0.1:{self.port}/api/v1/{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        with urllib.request.urlopen(url, timeout=10) as response:
            body = json.loads(response.read())
        assert body["status"] == "success", body
        return body["data"]

    def query(self, promql: str) -> dict[str, float]:
        """Instant query now: {pod (or model) label: value}."""
        result = self.api("query", query=promql)["result"]
        return {r["metric"].get("model", r["metric"].get("pod", "")): float(r["value"][1]) for r in result}

    def wait(self, what: str, condition, timeout: float):
        deadline = time.monotonic() + timeout
        while True:
            assert self.proc.poll() is None, f"prometheus exited:\n{self.log_text()}"
            try:
                value = condition()
            except (OSError, ValueError):
                value = None
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"Prometheus: {what} not within {timeout:.0f}s\n{self.log_text()[-3000:]}")
            time.sleep(0.5)

    def log_text(self) -> str:
        return (self.workdir / "prometheus.log").read_text(errors="replace")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=15)
        self.log.close()


# -- load from loopback ----------------------------------------------------------------------------------
class Load:
    """``clients`` closed-loop gRPC clients sending one short text per request, for at most ``seconds``.
    A refused request (bounded queue full) backs off 20 ms, as a client with retries would."""

    def __init__(self, grpc_url: str, model: str, clients: int, seconds: float):
        self.grpc_url, self.model, self.seconds = grpc_url, model, seconds
        self.stop = threading.Event()
        self.ok, self.refused, self.errors = [0] * clients, [0] * clients, []
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(clients)]

    def _run(self, i: int):
        import tritonclient.grpc as grpcclient
        from tritonclient.utils import InferenceServerException

        client = grpcclient.InferenceServerClient(self.grpc_url)
        texts = [b"Hello there. How are you today", b"This is a test this is another test.",
                 b"Sentence one. Sentence two! Three?"]
        deadline = time.monotonic() + self.seconds
        try:
            while not self.stop.is_set() and time.monotonic() < deadline:
                text = grpcclient.InferInput("TEXT", [1], "BYTES")
                text.set_data_from_numpy(np.array([texts[(i + self.ok[i]) % 3]], dtype=object))
                try:
                    client.infer(self.model, [text], client_timeout=20)
                    self.ok[i] += 1
                except InferenceServerException as exc:
                    if "queue size" not in str(exc):
                        self.errors.append(str(exc))
                        return
                    self.refused[i] += 1
                    time.sleep(0.02)
        finally:
            client.close()

    def __enter__(self):
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=30)
        assert not self.errors, self.errors[:3]


# -- the test ----------------------------------------------------------------------------------------------
# The GPU builds' shape (two ONNX instances behind the dynamic batcher, one padded call per merged batch)
# on the tiny checkpoint: the network is cheap, and a Python step saturates first (measured below).
MODEL = "tiny_fast"


@pytest.fixture
def pipeline_server(repository):
    """A tritonserver serving MODEL alone, as built: every step's queue bounded (sat-triton build's
    --max_queue_size), two instances of each Python step (docs/reliability.md)."""
    from sat_triton.builder.server import TritonServer, TritonServerError, find_tritonserver, free_port

    try:
        find_tritonserver()
    except TritonServerError as exc:
        pytest.skip(str(exc))
    server = TritonServer(repository, http_port=free_port(), grpc_port=free_port(), metrics_port=free_port(),
                          model_control_mode="explicit", extra_args=[f"--load-model={MODEL}", "--exit-timeout-secs=3"])
    server.start()
    try:
        server.wait_ready([MODEL], timeout=180)
        yield server
    finally:
        server.stop()


def rendered_deployment() -> dict:
    kubectl = shutil.which("kubectl")
    if not kubectl:
        pytest.skip("kubectl not found (`kubectl kustomize` renders the overlays)")
    out = subprocess.run([kubectl, "kustomize", str(K8S / "overlays" / "cpu")], capture_output=True, text=True,
                         check=True, timeout=60).stdout
    (deployment,) = [d for d in yaml.safe_load_all(out) if d and d["kind"] == "Deployment"]
    return deployment


@pytest.mark.integration
def test_autoscaling_signal_on_a_real_prometheus(pipeline_server, tmp_path):
    """Idle and below capacity the HPA's metric reads below its target; past capacity above it. The
    ONNX-only rule it replaces stays below its own target then, because a Python step, not the network,
    saturates first. (The signal is queue time, which refused requests do not add to: a full bounded
    queue holds it at about the bound, above the target; docs/deployment.md has that run.)"""
    from sat_triton.builder.server import free_port

    server = pipeline_server

    target = hpa_target()
    rule = adapter_rule()
    signal_query = expand_adapter_template(rule["metricsQuery"], rule_series(rule), [POD])
    old_query = expand_adapter_template(OLD_ONNX_ONLY_RULE, "", [POD])
    per_step = f'namespace_pod_model:sat_triton_queued_requests:rate1m{{namespace="{NAMESPACE}",pod="{POD}"}}'

    ports = {"http": server.http_port, "grpc": server.grpc_port,
             "metrics": server.metrics_port, "health": free_port()}
    targets_file = tmp_path / "pods.json"
    targets_file.write_text(json.dumps(pod_role_targets(running_pod(rendered_deployment(), ports))))
    job = with_file_sd(yaml.safe_load((PROMETHEUS / "scrape-config.yaml").read_text()), targets_file)
    job["scrape_interval"] = "1s"
    prometheus = Prometheus(tmp_path, prometheus_config(job, [RULES], interval="1s"))
    try:
        # One target per declared container port; the job keeps only `metrics`: one scrape per pod.
        targets = prometheus.wait("the pod's metrics target up", lambda: (
            lambda t: t if [a["health"] for a in t["activeTargets"]] == ["up"] else None)(
            prometheus.api("targets")), timeout=60)
        (active,) = targets["activeTargets"]
        assert active["scrapeUrl"] == f"http://127.0.0.1:{ports['metrics']}/metrics"
        assert (active["labels"]["namespace"], active["labels"]["pod"]) == (NAMESPACE, POD)
        dropped = sorted(int(t["discoveredLabels"]["__meta_kubernetes_pod_container_port_number"])
                         for t in targets["droppedTargets"])
        assert dropped == sorted(p for name, p in ports.items() if name != "metrics")

        # Idle: the recording rule has a value (two scrapes for rate()), far below the target.
        idle = prometheus.wait("the signal's series", lambda: prometheus.query(signal_query), timeout=30)
        assert idle == {POD: 0.0}

        with Load(server.grpc_url, MODEL, clients=1, seconds=6) as light:
            light.threads[0].join()
        below = prometheus.query(signal_query)[POD]
        old_below = prometheus.query(old_query)[POD]
        assert sum(light.ok) > 20 and sum(light.refused) == 0, "below capacity nothing is refused"
        assert below < target, f"one client: {below:.2f} queued, target {target}"

        # Past capacity: 16 clients; the queues fill (and, bounded, refuse). rate()[1m] still holds the
        # quiet seconds before, so the signal climbs for a while: read it until it passes the target.
        with Load(server.grpc_url, MODEL, clients=16, seconds=45) as heavy:
            started = time.monotonic()
            while True:
                time.sleep(1)
                overload = prometheus.query(signal_query)[POD]
                if overload > target or time.monotonic() - started > 40:
                    break
            crossed_after = time.monotonic() - started
            old_overload = prometheus.query(old_query)[POD]
            steps = prometheus.query(per_step)
        print(f"\nHPA signal (busiest step's queued requests, target {target}): idle "
              f"{idle[POD]:.2f}, 1 client {below:.2f}, 16 clients {overload:.2f} after {crossed_after:.0f} s; old ONNX-only rule (us/request, target "
              f"{OLD_TARGET_US:.0f}): 1 client {old_below:.0f}, 16 clients {old_overload:.0f}; per step "
              f"{ {m: round(v, 2) for m, v in steps.items()} }; 16 clients: {sum(heavy.ok)} served, "
              f"{sum(heavy.refused)} refused")
        assert overload > target, f"16 clients: {overload:.2f} queued, target {target}; per step {steps}"
        busiest = max(steps, key=steps.get)
        assert not busiest.endswith("_onnx"), f"the network saturated first here: {steps}"
        assert old_overload < OLD_TARGET_US, "the ONNX-only rule misses a Python step's saturation"
    finally:
        prometheus.stop()


# -- metric names ------------------------------------------------------------------------------------------
def named_metrics() -> dict[str, set[str]]:
    """Every nv_* metric name in any file under docs/ and deploy/: {name: files naming it}."""
    named: dict[str, set[str]] = {}
    for folder in (ROOT / "docs", ROOT / "deploy"):
        for path in folder.rglob("*"):
            if path.is_file() and path.suffix in {".md", ".yaml", ".yml", ".json", ".txt", ".pbtxt"}:
                for name in re.findall(r"\bnv_[a-z_]+[a-z]\b", path.read_text(errors="replace")):
                    named.setdefault(name, set()).add(str(path.relative_to(ROOT)))
    return named


@pytest.mark.integration
def test_metrics_named_in_docs_and_deploy_exist_in_a_live_scrape(server):
    """Every nv_* metric that docs/ and deploy/ name is one Triton 2.51 serves (GPU-only ones where a GPU is)."""
    with urllib.request.urlopen(f"http://{server.metrics_url}/metrics", timeout=10) as response:
        served = set(re.findall(r"^# TYPE (\w+) ", response.read().decode(), flags=re.M))
    assert any(name.startswith("nv_inference_") for name in served)
    named = named_metrics()
    assert "nv_inference_queue_duration_us" in named  # the recording rule's input is among them
    has_gpu = any(GPU_ONLY_METRIC.match(name) for name in served)
    missing = {n: sorted(files) for n, files in named.items()
               if n not in served and (has_gpu or not GPU_ONLY_METRIC.match(n))}
    assert not missing, f"not served by tritonserver: {missing}"


# -- docs/deployment.md ------------------------------------------------------------------------------------
DOCS = ROOT / "docs" / "deployment.md"


def fenced_blocks(lang: str) -> list[str]:
    """Bodies of the docs' ```lang blocks, indented ones (inside list items) dedented."""
    import textwrap

    found = re.findall(rf"^([ \t]*)```{lang}\n(.*?)^\1```", DOCS.read_text(), flags=re.S | re.M)
    return [textwrap.dedent(body) for _, body in found]


def promql_parse():
    try:
        import promql_parser
    except ImportError:
        pytest.skip("promql-parser is not installed (pip install 'promql-parser>=0.12')")
    return promql_parser.parse


def test_docs_promql_parses_and_shows_the_rules_and_the_adapters_query():
    parse = promql_parse()
    blocks = [b.strip() for b in fenced_blocks("promql")]
    for block in blocks:
        parse(block)
    with pytest.raises(ValueError):
        parse(blocks[0].replace("(rate(", "(rate((", 1))  # the parser can fail
    for group in yaml.safe_load(RULES.read_text())["groups"]:
        for rule in group["rules"]:
            assert rule["expr"] in blocks, f"docs do not show the recording rule {rule['record']}"
    rule = adapter_rule()
    pods = ["sat-triton-5d8c7b9f6-x2x7q", "sat-triton-5d8c7b9f6-q8w2n"]
    assert expand_adapter_template(rule["metricsQuery"], rule_series(rule), pods) in blocks


def test_docs_repeat_the_shipped_prometheus_snippets():
    blocks = [yaml.safe_load(b) for b in fenced_blocks("yaml")]
    scrape = yaml.safe_load((PROMETHEUS / "scrape-config.yaml").read_text())
    values = yaml.safe_load((PROMETHEUS / "prometheus-adapter-values.yaml").read_text())
    assert [scrape] in blocks, "docs' scrape job differs from deploy/prometheus/scrape-config.yaml"
    assert {"rules": values["rules"]} in blocks, "docs' adapter rule differs from the values file"
    (images,) = [b for b in blocks if isinstance(b, dict) and "images" in b]
    overlay = yaml.safe_load((K8S / "overlays" / "gpu" / "kustomization.yaml").read_text())
    assert images["images"][0]["name"] == overlay["images"][0]["name"]
    assert set(images["images"][0]) == set(overlay["images"][0]) | {"digest"}
