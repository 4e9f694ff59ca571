"""The service's Prometheus metrics during a real round trip (listener -> worker -> PACS, as in
test_service_e2e): every endpoint is scraped before and after, the counters moved by what was sent
and analysed, no label holds a patient identifier or a UID, and a real Prometheus (Debian
``prometheus``) scraping the three processes with the alert rules of deploy/prometheus loaded
answers a query with the same figures."""

from __future__ import annotations

import json
import os
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pydicom
import pytest
from prometheus_client.parser import text_string_to_metric_families

from followup.testing.service_harness import (
    FOLLOWUP,
    free_port,
    process,
    redis_server,
    require,
    storescp,
    storescu,
    wait_for,
    wait_port,
)

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
TOKEN = "metrics-e2e-api-token-0123456789abcdef"
METRICS_TOKEN = "metrics-e2e-scrape-token-0123456789abcdef"
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def _http(url: str, token: str | None = None) -> tuple[int, str]:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def scrape(port: int, token: str | None = None) -> tuple[str, Samples]:
    status, text = _http(f"http://127.0.0.1:{port}/metrics", token)
    assert status == 200, text
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(text) for s in family.samples}
    return text, samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def _refused_instance(src: Path, out: Path) -> Path:
    """One image of the follow-up as another study with an empty matrix: refused, quarantined."""
    ds = pydicom.dcmread(src)
    ds.StudyInstanceUID, ds.SeriesInstanceUID = pydicom.uid.generate_uid(), pydicom.uid.generate_uid()
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
    ds.Rows = 0
    out.mkdir()
    ds.save_as(out / "refused.dcm", enforce_file_format=True)
    return out


def _prometheus_config(tmp: Path, listener: int, worker: int, api: int) -> Path:
    (tmp / "metrics-token").write_text(METRICS_TOKEN)
    cfg = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(ROOT / "deploy/prometheus/alerts.yml")],
        "scrape_configs": [
            {"job_name": "followup-listener", "static_configs": [{"targets": [f"127.0.0.1:{listener}"]}]},
            {"job_name": "followup-worker", "static_configs": [{"targets": [f"127.0.0.1:{worker}"]}]},
            {"job_name": "followup-api", "static_configs": [{"targets": [f"127.0.0.1:{api}"]}],
             "authorization": {"credentials_file": str(tmp / "metrics-token")}},
        ],
    }
    path = tmp / "prometheus.yml"
    path.write_text(json.dumps(cfg))  # JSON is YAML
    return path


def _query(port: int, promql: str) -> list[dict]:
    status, text = _http(f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": promql}))
    assert status == 200, text
    return json.loads(text)["data"]["result"]


def test_metrics_of_a_round_trip(tmp_path, synth_pair):
    prometheus = require("prometheus", "prometheus")
    pair = synth_pair("residual", 1, "per-phase")
    truth = json.loads((pair / "truth.json").read_text())
    fu_uid = truth["studies"]["followup"]["study_uid"]
    files = [f for f in pair.rglob("*.dcm") if f.parent.name in ("baseline", "followup")]
    refused = _refused_instance(next((pair / "followup").glob("*.dcm")), tmp_path / "refused")
    with redis_server(tmp_path) as redis_url, storescp(tmp_path) as (pacs_port, received):
        env = dict(os.environ, FOLLOWUP_DATA_DIR=str(tmp_path / "data"), FOLLOWUP_REDIS_URL=redis_url,
                   FOLLOWUP_API_TOKEN=TOKEN, FOLLOWUP_METRICS_TOKEN=METRICS_TOKEN)
        for k in ("FOLLOWUP_DB_URL", "FOLLOWUP_DESTINATION", "FOLLOWUP_METRICS_PORT", "PROMETHEUS_MULTIPROC_DIR"):
            env.pop(k, None)
        add = subprocess.run([FOLLOWUP, "procedures", "add", str(pair / "procedure.json")], env=env,
                             capture_output=True, text=True)
        assert add.returncode == 0, add.stderr
        port, api_port, lm_port, wm_port, prom_port = (free_port() for _ in range(5))
        with process([FOLLOWUP, "serve-dicom", "--port", str(port), "--host", "127.0.0.1", "--allow", "PACS",
                      "--destination", f"PACS@127.0.0.1:{pacs_port}", "--quiet-seconds", "2",
                      "--metrics-port", str(lm_port)], tmp_path / "listener.log", env), \
             process([FOLLOWUP, "worker", "--queues", "realtime,batch", "--concurrency", "1",
                      "--metrics-port", str(wm_port), "--heartbeat-file", str(tmp_path / "heartbeat")],
                     tmp_path / "worker.log", env), \
             process([FOLLOWUP, "serve-api", "--port", str(api_port)], tmp_path / "api.log", env), \
             process([prometheus, f"--config.file={_prometheus_config(tmp_path, lm_port, wm_port, api_port)}",
                      f"--storage.tsdb.path={tmp_path / 'tsdb'}", f"--web.listen-address=127.0.0.1:{prom_port}"],
                     tmp_path / "prometheus.log"):
            for p in (port, api_port, lm_port, wm_port, prom_port):
                wait_port(p)
            # the worker is alive: its heartbeat reached Redis (the listener reports it) and its file
            wait_for(lambda: _http(f"http://127.0.0.1:{wm_port}/healthz")[0] == 200, 60, "the worker's /healthz")
            assert (tmp_path / "heartbeat").is_file()
            assert _http(f"http://127.0.0.1:{lm_port}/healthz")[0] == 200
            _, before = scrape(lm_port)
            assert value(before, "followup_instances_total", outcome="stored") == 0
            assert value(before, "followup_broker_up") == 1 and value(before, "followup_registry_up") == 1

            for folder in (pair / "baseline", pair / "followup"):
                assert storescu(folder, port).returncode == 0
            assert storescu(refused, port).returncode != 0  # the refusal's status reached the sender
            wait_for(lambda: len([f for f in received.rglob("*") if f.is_file()]) >= 3, 240, "SR, SEG, PDF at PACS")
            wait_for(lambda: value(scrape(lm_port)[1], "followup_deliveries", status="sent") == 3, 60,
                     "3 deliveries sent in the registry")
            status, _ = _http(f"http://127.0.0.1:{api_port}/studies/{fu_uid}", TOKEN)
            assert status == 200

            listener_text, lm = scrape(lm_port)
            worker_text, wm = scrape(wm_port)
            assert _http(f"http://127.0.0.1:{api_port}/metrics")[0] == 401
            assert _http(f"http://127.0.0.1:{api_port}/metrics", TOKEN)[0] == 401  # a user's token is not it
            api_text, am = scrape(api_port, METRICS_TOKEN)

            # the listener: what was sent, refused and quarantined; associations; the state
            assert value(lm, "followup_instances_total", outcome="stored") == len(files)
            assert value(lm, "followup_instances_total", outcome="refused") == 1
            assert value(lm, "followup_instances_refused_total", reason="dataset_does_not_match") == 1
            assert value(lm, "followup_instances_quarantined_total", kind="refused",
                         reason="dataset_does_not_match") == 1
            assert value(lm, "followup_quarantine_held", kind="refused") == 1
            assert value(lm, "followup_associations_total", outcome="accepted") == 3
            assert value(lm, "followup_association_duration_seconds_count", end="released") == 3
            assert value(lm, "followup_studies_handed_over_total") == 2
            assert value(lm, "followup_studies", state="complete") == 1
            assert value(lm, "followup_studies", state="baseline") == 1
            assert value(lm, "followup_deliveries", status="pending") == 0
            assert value(lm, "followup_delivery_oldest_pending_age_seconds") == 0
            assert value(lm, "followup_queue_depth", queue="realtime") == 0
            assert value(lm, "followup_disk_free_bytes", volume="data") > 0
            assert value(lm, "followup_store_instance_bytes") >= sum(f.stat().st_size for f in files) * 0.9
            beats = [k for k in lm if k[0] == "followup_worker_last_heartbeat_timestamp_seconds"]
            assert len(beats) == 1
            # the worker (its pool process's files, served by its main process)
            assert value(wm, "followup_analyses_total", queue="realtime", outcome="complete") == 1
            assert value(wm, "followup_analyses_total", queue="realtime", outcome="baseline") == 1
            assert value(wm, "followup_analysis_stage_seconds_count", stage="total") == 1
            assert value(wm, "followup_analysis_stage_seconds_sum", stage="total") > 0
            assert value(wm, "followup_deliveries_total", outcome="sent") == 3
            # the API: the route template, never the UID
            assert value(am, "followup_api_requests_total", method="GET", route="/studies/{study_uid}",
                         status="200") == 1
            assert value(am, "followup_api_requests_total", method="GET", route="/metrics", status="401") == 2

            # a real Prometheus scraped all three and loaded the alert rules
            wait_for(lambda: len(_query(prom_port, "up == 1")) == 3, 30, "Prometheus to scrape 3 targets")
            # (the series exist from the start at 0: wait for the scrape after the round trip)
            sent = 'sum(followup_deliveries_total{outcome="sent"})'
            wait_for(lambda: [float(r["value"][1]) for r in _query(prom_port, sent)] == [3], 30,
                     "3 objects sent, in Prometheus")
            complete = 'followup_studies{state="complete"}'  # also there at 0 before the study ends
            wait_for(lambda: [float(r["value"][1]) for r in _query(prom_port, complete)] == [1], 30,
                     "1 complete study, in Prometheus")
            status, rules = _http(f"http://127.0.0.1:{prom_port}/api/v1/rules")
            groups = json.loads(rules)["data"]["groups"]
            assert groups and all(r["health"] == "ok" for g in groups for r in g["rules"]), rules[:2000]
            # the alerts: the refused instance makes the quarantine rise, and nothing else is wrong
            alerts = wait_for(lambda: {a["metric"]["alertname"] for a in _query(prom_port, "ALERTS")} or None, 30,
                              "an alert on the quarantined instance")
            assert alerts == {"FollowupQuarantineRising"}
    # no patient identifier and no UID in any endpoint's text (labels, help texts)
    src = pydicom.dcmread(next((pair / "followup").glob("*.dcm")), stop_before_pixels=True)
    secrets = [str(src.PatientName), str(src.PatientName).split("^")[0], src.PatientID, src.PatientBirthDate,
               fu_uid, truth["studies"]["baseline"]["study_uid"], src.SeriesInstanceUID]
    for name, text in (("listener", listener_text), ("worker", worker_text), ("api", api_text)):
        for secret in secrets:
            assert secret not in text, f"{secret!r} in the {name}'s metrics"
