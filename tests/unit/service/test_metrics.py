"""followup.service.metrics without processes: the state a scrape reads from the registry and the
disk (the broker unreachable: reported, the rest still answers), the API's /metrics and its token,
and labels that never carry a patient identifier. The round trip with real processes and a real
Prometheus is tests/integration/test_metrics.py."""

from __future__ import annotations

import datetime as dt

from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from followup.api.app import create_app
from followup.config import Settings
from followup.service import metrics
from followup.service.registry import Registry
from followup.service.store import Store
from followup.testing.service_harness import free_port

PATIENT, NAME = "SECRET-PID-4711", "Secretname^Ann"
UID = "1.2.826.0.1.3680043.8.498.777"
MR = "1.2.840.10008.5.1.4.1.1.4"


def _samples(registry: CollectorRegistry) -> tuple[str, dict]:
    text = generate_latest(registry).decode()
    return text, {(s.name, tuple(sorted(s.labels.items()))): s.value
                  for f in text_string_to_metric_families(text) for s in f.samples}


def test_state_of_the_registry_and_disk_with_the_broker_down(tmp_path):
    reg = Registry(f"sqlite:///{tmp_path / 'r.db'}")
    Store(tmp_path / "data")
    reg.record_instance(study_uid=UID, series_uid=UID + ".1", sop_uid=UID + ".1.1", sop_class_uid=MR,
                        path=str(tmp_path / "x.dcm"), size=1234, patient_id=PATIENT, study_date=dt.date(2024, 6, 1),
                        modality="MR", accession_number="ACC", calling_ae="PACS")
    reg.set_study(UID, state="complete")
    a = reg.get_or_create_analysis(UID, "1.0.0", 1, "realtime")
    reg.finish_analysis(a.id, "complete", None)
    for kind in ("sr", "seg"):
        reg.add_delivery(a.id, kind, UID + f".9.{len(kind)}", str(tmp_path / f"{kind}.dcm"), "PACS@127.0.0.1:104")
    reg.add_quarantined(kind="stray", reason=f"patient {PATIENT} differs", status="0xC000", file="q.dcm", size=1,
                        study_uid=UID, patient_id=PATIENT, calling_ae="PACS")
    registry = CollectorRegistry()
    registry.register(metrics.ServiceState(reg, tmp_path / "data", f"redis://127.0.0.1:{free_port()}/0"))
    text, s = _samples(registry)
    assert s[("followup_registry_up", ())] == 1
    assert s[("followup_broker_up", ())] == 0  # nothing listens there: said, and the rest answers
    assert s[("followup_studies", (("state", "complete"),))] == 1
    assert s[("followup_studies", (("state", "receiving"),))] == 0
    assert s[("followup_deliveries", (("status", "pending"),))] == 2
    assert 0 <= s[("followup_delivery_oldest_pending_age_seconds", ())] < 60
    assert s[("followup_quarantine_held", (("kind", "stray"),))] == 1
    assert s[("followup_store_instance_bytes", ())] == 1234
    assert s[("followup_disk_free_bytes", (("volume", "data"),))] > 0
    assert s[("followup_analyses_active", (("status", "queued"),))] == 0
    for secret in (PATIENT, NAME, UID, "Secretname"):
        assert secret not in text


def test_refusal_labels_are_a_closed_set():
    assert metrics.refusal_reason(0xA900) == "dataset_does_not_match"
    assert metrics.refusal_reason(0xC000) == "cannot_understand"
    assert metrics.refusal_reason(0x1234) == "other"


def test_api_metrics_need_their_own_token(tmp_path):
    api_token, metrics_token = "api-token-" + "a" * 32, "metrics-token-" + "b" * 32
    reg = Registry(f"sqlite:///{tmp_path / 'r.db'}")
    client = TestClient(create_app(Settings(data_dir=tmp_path, api_token=api_token, metrics_token=metrics_token),
                                   reg))
    assert client.get(f"/studies/{UID}", headers={"Authorization": f"Bearer {api_token}"}).status_code == 404
    for headers in ({}, {"Authorization": f"Bearer {api_token}"}, {"Authorization": f"Bearer {metrics_token}x"}):
        r = client.get("/metrics", headers=headers)
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    r = client.get("/metrics", headers={"Authorization": f"Bearer {metrics_token}"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    assert 'followup_api_requests_total{method="GET",route="/studies/{study_uid}",status="404"}' in r.text
    assert UID not in r.text
    # without a metrics token configured, nobody reads them
    closed = TestClient(create_app(Settings(data_dir=tmp_path, api_token=api_token), reg))
    assert closed.get("/metrics", headers={"Authorization": f"Bearer {api_token}"}).status_code == 401
