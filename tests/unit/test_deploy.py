"""deploy/: the Prometheus alert rules and configuration (promtool), the Grafana dashboard, and the
Kubernetes manifests (validated offline against the Kubernetes schemas kubernetes-validate ships).
Every metric the rules and the dashboard name is one the service exports."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S_VERSION = "1.30"


def _promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.skip("promtool (Debian package prometheus) is not installed: the rules were NOT checked")
    return path


def exported_metrics() -> set[str]:
    """The metric names ``followup.service.metrics`` defines (Counter names gain ``_total``;
    histograms ``_bucket``/``_sum``/``_count``)."""
    text = (ROOT / "followup/service/metrics.py").read_text()
    names = set(re.findall(r'_gauge\(\s*"(followup_\w+)"', text))
    names |= {n + "_up" for n in re.findall(r'"(followup_(?:registry|broker))_up"', text)}
    names |= {f"{n}_total" for n in re.findall(r'Counter\(\s*"(followup_\w+)"', text)}
    histograms = re.findall(r'Histogram\(\s*"(followup_\w+)"', text)
    names |= {f"{n}{s}" for n in histograms for s in ("_bucket", "_sum", "_count")}
    return names


def named_metrics(text: str) -> set[str]:
    return set(re.findall(r"\bfollowup_[a-z_]+\b", text)) - {"followup_service"}


def test_alert_rules_pass_promtool_and_name_exported_metrics():
    res = subprocess.run([_promtool(), "check", "rules", str(DEPLOY / "prometheus/alerts.yml")],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
    yaml = pytest.importorskip("yaml")
    rules = [r for g in yaml.safe_load((DEPLOY / "prometheus/alerts.yml").read_text())["groups"] for r in g["rules"]]
    names = {r["alert"] for r in rules}
    assert {"FollowupRealtimeQueueStale", "FollowupDeliveryFailed", "FollowupDeliveryPendingTooLong",
            "FollowupQuarantineRising", "FollowupDiskLow", "FollowupNoLiveWorker", "FollowupAnalysesFailing"} <= names
    used = set().union(*(named_metrics(r["expr"]) for r in rules))
    assert used and used <= exported_metrics(), used - exported_metrics()


def test_prometheus_configuration_passes_promtool(tmp_path):
    config = (DEPLOY / "prometheus/prometheus.yml").read_text()
    # the container's paths, here: the rules and the CA of the repository
    (tmp_path / "ca.pem").write_text("")
    config = config.replace("/etc/prometheus/alerts.yml", str(DEPLOY / "prometheus/alerts.yml"))
    config = config.replace("/certs/ca.pem", str(tmp_path / "ca.pem"))
    config = config.replace("/prometheus/metrics-token", str(tmp_path / "token"))
    (tmp_path / "prometheus.yml").write_text(config)
    res = subprocess.run([_promtool(), "check", "config", "--syntax-only", str(tmp_path / "prometheus.yml")],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


def test_grafana_dashboard_queries_exported_metrics():
    dashboard = json.loads((DEPLOY / "grafana/followup-dashboard.json").read_text())
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    exprs = [t["expr"] for p in panels for t in p["targets"]]
    assert len(panels) >= 15 and all(p["datasource"]["uid"] == "prometheus" for p in panels)
    used = set().union(*(named_metrics(e) for e in exprs))
    assert used <= exported_metrics(), used - exported_metrics()
    # every kind of figure the issue asks for is on it
    for metric in ("followup_queue_oldest_task_age_seconds", "followup_analysis_stage_seconds_bucket",
                   "followup_deliveries_total", "followup_quarantine_held", "followup_disk_free_bytes",
                   "followup_worker_last_heartbeat_timestamp_seconds", "followup_batch_studies_done",
                   "followup_instances_total", "followup_association_duration_seconds_bucket", "followup_studies"):
        assert metric in used, metric
    provisioned = (DEPLOY / "grafana/provisioning/datasources/prometheus.yml").read_text()
    assert "uid: prometheus" in provisioned


def _manifests() -> list[dict]:
    yaml = pytest.importorskip("yaml")
    docs = []
    for path in sorted((DEPLOY / "k8s").glob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def test_kubernetes_manifests_validate_against_the_schemas():
    kv = pytest.importorskip("kubernetes_validate", reason="kubernetes-validate (dev extra) is not installed")
    docs = _manifests()
    assert len(docs) >= 15
    for doc in docs:
        kv.validate(doc, K8S_VERSION, strict=True)  # raises on an unknown or ill-typed field
    with pytest.raises(kv.ValidationError):  # the check can fail
        kv.validate({**docs[0], "spec": {"replicas": "two"}}, K8S_VERSION, strict=True)


def test_kubernetes_manifests_keep_the_deployment_rules():
    docs = {(d["kind"], d["metadata"]["name"]): d for d in _manifests()}
    listener = docs[("Deployment", "followup-listener")]["spec"]
    assert listener["replicas"] == 1 and listener["strategy"]["type"] == "Recreate"
    assert docs[("PersistentVolumeClaim", "followup-data")]["spec"]["accessModes"] == ["ReadWriteMany"]
    for name in ("followup-listener", "followup-worker", "followup-api"):
        pod = docs[("Deployment", name)]["spec"]["template"]["spec"]
        claims = {v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"] if "persistentVolumeClaim" in v}
        assert claims == {"followup-data"}, name
        for container in pod["containers"]:
            assert container.get("readinessProbe") and container.get("livenessProbe"), name
    worker = docs[("Deployment", "followup-worker")]["spec"]["template"]["spec"]["containers"][0]
    assert "--heartbeat-file" in worker["args"]
    assert worker["livenessProbe"]["exec"]["command"][-1].count("/run/followup/heartbeat") == 1
    assert docs[("HorizontalPodAutoscaler", "followup-worker")]["spec"]["scaleTargetRef"]["name"] == "followup-worker"
