"""The Kubernetes manifests, as `kubectl kustomize` renders each overlay: validated against the Kubernetes
JSON schemas (kubernetes-validate, offline), scanned by checkov (its own venv, .tools/checkov, from
scripts/setup-tools.sh), and held to what a platform team asks of them (issue 11, item 4)."""

from __future__ import annotations

import copy
import functools
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

import dockerfiles

ROOT = Path(__file__).resolve().parent.parent
K8S = ROOT / "deploy" / "kubernetes"
OVERLAYS = ["cpu", "gpu"]
NAMESPACE = "sat-triton"
POD_LABELS = {"app.kubernetes.io/name": "sat-triton"}
PORTS = {"http": 8000, "grpc": 8001, "metrics": 8002, "health": 8003}  # CONTRACTS.md
CHECKOV = ROOT / ".tools" / "checkov" / "bin" / "checkov"
IMAGE_DOCKERFILES = {"cpu": ROOT / "Dockerfile.cpu", "gpu": ROOT / "Dockerfile.triton"}
# Oldest Kubernetes the manifests claim to support, and the newest the validator knows.
K8S_VERSIONS = ["1.28", "latest"]
# Custom resources (Prometheus Operator): no Kubernetes schema knows them; promtool checks the rules
# (tests/test_prometheus.py) and test_pod_monitor_scrapes_the_metrics_port checks the PodMonitor.
CUSTOM_KINDS = {("monitoring.coreos.com/v1", "PodMonitor"), ("monitoring.coreos.com/v1", "PrometheusRule")}


# -- rendering -----------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=None)
def _render(overlay: str) -> str:
    kubectl = shutil.which("kubectl")
    if not kubectl:
        pytest.skip("kubectl not found: `kubectl kustomize` renders the overlays (kubectl 1.14+ has kustomize built in)")
    done = subprocess.run([kubectl, "kustomize", str(K8S / "overlays" / overlay)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def rendered(overlay: str) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(_render(overlay)) if doc]


def one(docs: list[dict], kind: str) -> dict:
    (found,) = [d for d in docs if d["kind"] == kind]
    return found


def pod_spec(docs: list[dict]) -> dict:
    return one(docs, "Deployment")["spec"]["template"]["spec"]


def server_container(docs: list[dict]) -> dict:
    (container,) = pod_spec(docs)["containers"]
    return container


def kubernetes_validate():
    try:
        import kubernetes_validate.utils as utils
    except ImportError:
        pytest.skip("kubernetes-validate is not installed (pip install 'kubernetes-validate>=1.37'; "
                    "it ships the Kubernetes JSON schemas and validates offline)")
    return utils


def k8s_version(utils, version: str) -> str:
    return utils.latest_version() if version == "latest" else version


# -- schemas -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_validates_against_kubernetes_schema(overlay, version):
    utils = kubernetes_validate()
    docs = rendered(overlay)
    kinds = {(d["apiVersion"], d["kind"]) for d in docs}
    assert kinds - CUSTOM_KINDS >= {("v1", "Namespace"), ("apps/v1", "Deployment"), ("v1", "Service"),
                                    ("autoscaling/v2", "HorizontalPodAutoscaler"),
                                    ("policy/v1", "PodDisruptionBudget"), ("networking.k8s.io/v1", "NetworkPolicy")}
    for doc in docs:
        if (doc["apiVersion"], doc["kind"]) not in CUSTOM_KINDS:
            utils.validate(doc, k8s_version(utils, version), strict=True)  # raises on any error


def _set(doc: dict, path: str, value):
    *parents, last = path.split(".")
    node = doc
    for key in parents:
        node = node[int(key)] if key.isdigit() else node[key]
    if value is _DELETE:
        del node[last]
    else:
        node[int(last) if last.isdigit() else last] = value


_DELETE = object()
BROKEN = [
    ("Deployment", "spec.revisionHistoryLimit", "five"),                                  # wrong type
    ("Deployment", "spec.template.spec.containers.0.readinesProbe", {"httpGet": {}}),    # misspelt field
    ("Deployment", "spec.template.spec.containers.0.ports.0.containerPort", "8000"),     # string port
    ("Service", "spec.ports.0.port", {"number": 8000}),                                   # wrong type
    ("HorizontalPodAutoscaler", "spec.metrics.0.pods.target", _DELETE),                   # required field
    ("PodDisruptionBudget", "spec.selector.matchLabels", ["app"]),                        # not a map
    ("NetworkPolicy", "spec.policyTypes", "Ingress"),                                     # not a list
]


@pytest.mark.parametrize("kind,path,value", BROKEN, ids=[f"{k}:{p}" for k, p, _ in BROKEN])
def test_validator_rejects_a_broken_manifest(kind, path, value):
    utils = kubernetes_validate()
    broken = copy.deepcopy(one(rendered("cpu"), kind))
    utils.validate(broken, utils.latest_version(), strict=True)
    _set(broken, path, value)
    with pytest.raises(utils.ValidationError):
        utils.validate(broken, utils.latest_version(), strict=True)


# -- checkov -------------------------------------------------------------------------------------------
def weakened(docs: list[dict]) -> list[dict]:
    """The cpu overlay with the root filesystem writable and the pod's seccomp profile gone."""
    docs = copy.deepcopy(docs)
    deployment = one(docs, "Deployment")
    del deployment["spec"]["template"]["spec"]["securityContext"]["seccompProfile"]
    deployment["spec"]["template"]["spec"]["containers"][0]["securityContext"]["readOnlyRootFilesystem"] = False
    return docs


@pytest.fixture(scope="session")
def checkov_results(tmp_path_factory) -> dict[str, dict]:
    """One checkov run over every overlay's rendered output (and a weakened copy, to see it fail):
    {file stem: {"passed": [...], "failed": [...], "skipped": [...]}}."""
    if not CHECKOV.exists():
        pytest.skip(f"checkov not installed at {CHECKOV.relative_to(ROOT)} (bash scripts/setup-tools.sh)")
    folder = tmp_path_factory.mktemp("checkov")
    for overlay in OVERLAYS:
        (folder / f"{overlay}.yaml").write_text(_render(overlay))
    (folder / "weakened.yaml").write_text(yaml.safe_dump_all(weakened(rendered("cpu"))))
    done = subprocess.run([str(CHECKOV), "--directory", str(folder), "--framework", "kubernetes", "--output", "json",
                           "--skip-download"], capture_output=True, text=True, timeout=300)
    report = json.loads(done.stdout)
    (kubernetes,) = [r for r in (report if isinstance(report, list) else [report]) if r["check_type"] == "kubernetes"]
    assert kubernetes["summary"]["parsing_errors"] == 0, kubernetes["summary"]
    results: dict[str, dict] = {}
    for outcome in ("passed", "failed", "skipped"):
        for check in kubernetes["results"].get(f"{outcome}_checks", []):
            stem = Path(check["file_path"]).stem
            results.setdefault(stem, {"passed": [], "failed": [], "skipped": []})[outcome].append(check)
    return results


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_checkov_passes_every_overlay(checkov_results, overlay):
    results = checkov_results[overlay]
    failed = [f"{c['check_id']} {c['check_name']} ({c['resource']})" for c in results["failed"]]
    assert not failed, failed
    assert len(results["passed"]) >= 50, "checkov saw the manifests"
    for check in results["skipped"]:  # each skip is inline (a checkov.io/skip annotation) with its reason
        assert len(check["check_result"].get("suppress_comment", "")) > 40, check["check_id"]
    assert {c["check_id"] for c in results["skipped"]} <= {"CKV_K8S_43"}


def test_checkov_fails_a_weakened_deployment(checkov_results):
    failed = {c["check_id"] for c in checkov_results["weakened"]["failed"]}
    assert {"CKV_K8S_22", "CKV_K8S_31"} <= failed  # read-only root filesystem, seccomp profile


# -- what a platform team asks for ---------------------------------------------------------------------
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_everything_lives_in_its_own_restricted_namespace(overlay):
    docs = rendered(overlay)
    namespace = one(docs, "Namespace")
    assert namespace["metadata"]["name"] == NAMESPACE
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    for doc in docs:
        if doc["kind"] != "Namespace":
            assert doc["metadata"].get("namespace") == NAMESPACE, f"{doc['kind']} in the default namespace"
    assert not [d for d in docs if d["kind"] == "PersistentVolumeClaim"], "the model is baked into the image"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_pods_run_under_the_restricted_pod_security_profile(overlay):
    docs = rendered(overlay)
    pod, container = pod_spec(docs), server_container(docs)
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] >= 10000 and pod["securityContext"]["runAsGroup"] >= 10000
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    security = container["securityContext"]
    assert security["allowPrivilegeEscalation"] is False and security["privileged"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert security["readOnlyRootFilesystem"] is True
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: volumes[m["name"]] for m in container["volumeMounts"]}
    assert "emptyDir" in mounts["/tmp"] and mounts["/tmp"]["emptyDir"]["sizeLimit"]
    assert mounts["/dev/shm"]["emptyDir"]["medium"] == "Memory" and mounts["/dev/shm"]["emptyDir"]["sizeLimit"]
    assert all("hostPath" not in v and "persistentVolumeClaim" not in v for v in volumes.values())
    # no service-account token: neither mounted into the pod nor by the account's default
    assert pod["automountServiceAccountToken"] is False
    account = one(docs, "ServiceAccount")
    assert pod["serviceAccountName"] == account["metadata"]["name"] and account["automountServiceAccountToken"] is False


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_runs_as_its_images_user(overlay):
    users = dockerfiles.instructions(IMAGE_DOCKERFILES[overlay], "USER")
    assert users, f"{IMAGE_DOCKERFILES[overlay].name} sets no USER"
    uid = users[-1].split(":")[0]
    assert pod_spec(rendered(overlay))["securityContext"]["runAsUser"] == int(uid)


def serve_command(overlay: str, container: dict) -> list[str]:
    """What the pod runs: the image's entrypoint (its wrapper, tini or NGC's script, kept: the container
    sets no `command`) with the container's `args` appended."""
    assert "command" not in container, "a `command` would replace the image's tini / NGC entrypoint wrapper"
    return dockerfiles.serve_command(IMAGE_DOCKERFILES[overlay]) + list(container.get("args", []))


def serve_flags(overlay: str, container: dict) -> dict[str, str]:
    command = serve_command(overlay, container)
    assert command[:3] == ["sat-triton", "serve", "/models"], command
    flags = dict(zip(command[3::2], command[4::2]))
    assert all(flag.startswith("--") for flag in flags), command
    return flags


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_server_command_is_a_sat_triton_serve_command(overlay):
    """Parsed by the real CLI (CONTRACTS.md: `sat-triton serve`)."""
    from sat_triton.builder.cli import _build_parser

    command = serve_command(overlay, server_container(rendered(overlay)))
    assert command[0] == "sat-triton"
    args = _build_parser().parse_args(command[1:])  # SystemExit on a flag the CLI does not know
    assert args.host == "0.0.0.0" and args.health_port == PORTS["health"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_probes_use_the_truthful_health_port(overlay):
    container = server_container(rendered(overlay))
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == PORTS

    def probe(name: str, path: str) -> dict:
        get = container[name]["httpGet"]
        assert (get["path"], ports.get(get["port"], get["port"])) == (path, PORTS["health"]), name
        return container[name]

    probe("readinessProbe", "/v2/health/ready")
    probe("livenessProbe", "/v2/health/live")
    startup = probe("startupProbe", "/v2/health/ready")
    minutes = {"cpu": 10, "gpu": 20}[overlay]  # TensorRT engines build at the first load
    assert startup["periodSeconds"] * startup["failureThreshold"] >= minutes * 60


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_termination_outlasts_the_prestop_delay_and_the_drain(overlay):
    docs = rendered(overlay)
    container = server_container(docs)
    pre_stop = container["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    exit_timeout = int(serve_flags(overlay, container)["--exit_timeout"])
    # sat-triton serve stops within --exit_timeout + 30 s of SIGTERM (docs/reliability.md)
    assert pod_spec(docs)["terminationGracePeriodSeconds"] > int(pre_stop[1]) + exit_timeout + 30


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_rollouts_and_disruptions_keep_a_pod_serving(overlay):
    docs = rendered(overlay)
    deployment, hpa, pdb = one(docs, "Deployment"), one(docs, "HorizontalPodAutoscaler"), one(docs, "PodDisruptionBudget")
    assert "replicas" not in deployment["spec"], "the HPA owns the replica count"
    assert deployment["spec"]["strategy"] == {"type": "RollingUpdate",
                                              "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["apiVersion"], target["kind"], target["name"]) == (
        deployment["apiVersion"], deployment["kind"], deployment["metadata"]["name"])
    assert hpa["spec"]["minReplicas"] >= 2 and hpa["spec"]["maxReplicas"] > hpa["spec"]["minReplicas"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert pdb["spec"]["maxUnavailable"] == 1 < hpa["spec"]["minReplicas"]
    spread = pod_spec(docs)["topologySpreadConstraints"]
    assert {c["topologyKey"] for c in spread} == {"topology.kubernetes.io/zone", "kubernetes.io/hostname"}
    assert all(c["labelSelector"]["matchLabels"].items() <= labels.items() for c in spread)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_resources_have_requests_and_limits(overlay):
    resources = server_container(rendered(overlay))["resources"]
    for kind in ("cpu", "memory"):
        assert kind in resources["requests"] and kind in resources["limits"], kind
    gpus = resources["limits"].get("nvidia.com/gpu")
    assert (str(gpus) == "1") if overlay == "gpu" else gpus is None


def test_gpu_overlay_keeps_tensorrt_engines_where_the_builder_points_them():
    """The volume is where docs/deployment.md's --tensorrt build tells onnxruntime to cache engines."""
    docs = rendered("gpu")
    pod, container = pod_spec(docs), server_container(docs)
    volumes = {v["name"]: v for v in pod["volumes"]}
    (cache,) = [m for m in container["volumeMounts"] if "tensorrt" in m["name"]]
    assert volumes[cache["name"]]["emptyDir"]["sizeLimit"] and not cache.get("readOnly")
    docs_text = (ROOT / "docs" / "deployment.md").read_text()
    assert f"--tensorrt_cache_dir {cache['mountPath']}" in docs_text
    assert pod["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_image_is_pinned_through_kustomize_images(overlay):
    kustomization = yaml.safe_load((K8S / "overlays" / overlay / "kustomization.yaml").read_text())
    (image,) = kustomization["images"]
    assert image["name"] == "sat-triton" == yaml.safe_load((K8S / "base" / "deployment.yaml").read_text())[
        "spec"]["template"]["spec"]["containers"][0]["image"]
    assert re.fullmatch(r"\d+\.\d+\.\d+", image["newTag"]), "a fixed release tag, not latest"
    rendered_image = server_container(rendered(overlay))["image"]
    assert rendered_image == f"{image['newName']}:{image['newTag']}" + (
        f"@{image['digest']}" if "digest" in image else "")
    assert {"cpu": "sat-triton-cpu", "gpu": "sat-triton"}[overlay] == image["newName"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_network_policy_admits_only_inference_and_metrics(overlay):
    docs = rendered(overlay)
    policy, labels = one(docs, "NetworkPolicy"), one(docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= labels.items()
    assert set(policy["spec"]["policyTypes"]) == {"Ingress", "Egress"} and policy["spec"]["egress"] == []
    admitted = {port["port"]: rule["from"] for rule in policy["spec"]["ingress"] for port in rule["ports"]}
    assert set(admitted) == {PORTS["http"], PORTS["grpc"], PORTS["metrics"]}
    assert admitted[PORTS["metrics"]] != [{"namespaceSelector": {}}], "metrics only from the monitoring namespace"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_service_and_pod_monitor_name_the_containers_ports(overlay):
    docs = rendered(overlay)
    container_ports = {p["name"] for p in server_container(docs)["ports"]}
    labels = one(docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    service = one(docs, "Service")
    assert {p["name"]: p["port"] for p in service["spec"]["ports"]} == {"http": 8000, "grpc": 8001}
    assert all(p["targetPort"] in container_ports for p in service["spec"]["ports"])
    assert service["spec"]["selector"].items() <= labels.items()
    monitor = one(docs, "PodMonitor")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert [(e["port"], e["path"]) for e in monitor["spec"]["podMetricsEndpoints"]] == [("metrics", "/metrics")]
    annotations = one(docs, "Deployment")["spec"]["template"]["metadata"].get("annotations", {})
    assert not [a for a in annotations if a.startswith("prometheus.io/")], "annotation-based jobs would scrape again"
