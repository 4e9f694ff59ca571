"""Results to PACS: a PACS that is down leaves the objects pending with the error visible; they
are delivered once it is back; after the last retry they are marked failed."""

from __future__ import annotations

import os
import subprocess

import pytest

from followup.analyze import run_analysis
from followup.service.registry import Registry
from service_harness import free_port, require, wait_port


@pytest.fixture(scope="module")
def report(synth_pair, tmp_path_factory):
    pair = synth_pair("complete", 3, "single-series")
    out = tmp_path_factory.mktemp("report")
    return run_analysis(pair / "baseline", pair / "followup", pair / "procedure.json", out), out


def _analysis(report, tmp_path, monkeypatch):
    """A registry (used by the tasks) holding one analysis of the report's study."""
    import workers.tasks as tasks

    result, _ = report
    reg = Registry(f"sqlite:///{tmp_path}/r.db")
    monkeypatch.setattr(tasks, "_registry", reg)
    study = result.report["studies"]["followup"]["study_instance_uid"]
    reg.record_instance(study_uid=study, series_uid="1.2", sop_uid="1.2.3", sop_class_uid="1.2", path="/x", size=1,
                        patient_id="P", study_date=None, modality="MR", accession_number="", calling_ae="PACS")
    return tasks, reg, reg.get_or_create_analysis(study, "t", 1, "realtime")


def test_pacs_down_then_back(report, tmp_path, monkeypatch):
    tasks, reg, a = _analysis(report, tmp_path, monkeypatch)
    result, out = report
    port = free_port()
    for kind, info in result.report["outputs"].items():
        reg.add_delivery(a.id, kind, info["sop_instance_uid"], str(out / info["file"]), f"PACS@127.0.0.1:{port}")
    assert tasks.deliver_pending(a.id) is False  # nobody listens: pending, error recorded
    rows = reg.deliveries(analysis_id=a.id)
    assert {d.status for d in rows} == {"pending"} and all(d.attempts == 1 and d.last_error for d in rows)
    storescp = require("storescp", "dcmtk")
    received = tmp_path / "pacs"
    received.mkdir()
    proc = subprocess.Popen([storescp, "--aetitle", "PACS", "-od", str(received), "+xa", str(port)],
                            env=dict(os.environ, TCP_NODELAY="1"))
    try:
        wait_port(port)
        assert tasks.deliver_pending(a.id) is True
    finally:
        proc.terminate()
        proc.wait()
    rows = reg.deliveries(analysis_id=a.id)
    assert {d.status for d in rows} == {"sent"} and all(d.attempts == 2 and d.last_error is None for d in rows)
    assert len(list(received.iterdir())) == len(rows)
    assert tasks.deliver_pending(a.id) is True  # idempotent: nothing sent twice
    assert len(list(received.iterdir())) == len(rows)


def test_last_retry_marks_failed(report, tmp_path, monkeypatch):
    tasks, reg, a = _analysis(report, tmp_path, monkeypatch)
    result, out = report
    info = result.report["outputs"]["sr"]
    reg.add_delivery(a.id, "sr", info["sop_instance_uid"], str(out / info["file"]), f"PACS@127.0.0.1:{free_port()}")
    assert tasks.deliver_pending(a.id, final=True) is False
    (d,) = reg.deliveries(analysis_id=a.id)
    assert d.status == "failed" and "refused" in d.last_error
