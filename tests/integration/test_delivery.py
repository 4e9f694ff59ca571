"""Results to PACS: a PACS that is down leaves the objects pending with the error visible; they
are delivered once it is back; after the last retry they are marked failed."""

from __future__ import annotations

import os
import subprocess

import pytest

from followup.config import Settings
from followup.job import run_job
from followup.procedure import load_procedure
from followup.service.delivery import deliver_pending
from followup.service.registry import Registry
from followup.testing.service_harness import free_port, require, wait_port


@pytest.fixture(scope="module")
def report(synth_pair, tmp_path_factory):
    pair = synth_pair("complete", 3, "single-series")
    out = tmp_path_factory.mktemp("report")
    return run_job(pair / "followup", pair / "baseline", load_procedure(pair / "procedure.json"), out), out


def _analysis(report, tmp_path):
    """A registry holding one analysis of the report's study, and ``deliver(analysis_id, final)``:
    one delivery attempt as the worker makes it (``deliver_pending``) with these settings."""
    result, _ = report
    reg = Registry(f"sqlite:///{tmp_path}/r.db")
    settings = Settings(data_dir=tmp_path / "data")

    def deliver(analysis_id: int, final: bool = False) -> bool:
        return deliver_pending(settings, reg, analysis_id, final=final)
    study = result.report.studies.followup.study_instance_uid
    reg.record_instance(study_uid=study, series_uid="1.2", sop_uid="1.2.3", sop_class_uid="1.2", path="/x", size=1,
                        patient_id="P", study_date=None, modality="MR", accession_number="", calling_ae="PACS")
    return deliver, reg, reg.get_or_create_analysis(study, "t", 1, "realtime")


def test_pacs_down_then_back(report, tmp_path):
    deliver, reg, a = _analysis(report, tmp_path)
    result, out = report
    port = free_port()
    for kind, info in result.report.outputs.items():
        reg.add_delivery(a.id, kind, info.sop_instance_uid, str(out / info.file), f"PACS@127.0.0.1:{port}")
    assert deliver(a.id) is False  # nobody listens: pending, error recorded
    rows = reg.deliveries(analysis_id=a.id)
    assert {d.status for d in rows} == {"pending"} and all(d.attempts == 1 and d.last_error for d in rows)
    storescp = require("storescp", "dcmtk")
    received = tmp_path / "pacs"
    received.mkdir()
    proc = subprocess.Popen([storescp, "--aetitle", "PACS", "-od", str(received), "+xa", str(port)],
                            env=dict(os.environ, TCP_NODELAY="1"))
    try:
        wait_port(port)
        assert deliver(a.id) is True
    finally:
        proc.terminate()
        proc.wait()
    rows = reg.deliveries(analysis_id=a.id)
    assert {d.status for d in rows} == {"sent"} and all(d.attempts == 2 and d.last_error is None for d in rows)
    assert len(list(received.iterdir())) == len(rows)
    assert deliver(a.id) is True  # idempotent: nothing sent twice
    assert len(list(received.iterdir())) == len(rows)


def test_last_retry_marks_failed(report, tmp_path):
    deliver, reg, a = _analysis(report, tmp_path)
    result, out = report
    info = result.report.outputs["sr"]
    reg.add_delivery(a.id, "sr", info.sop_instance_uid, str(out / info.file), f"PACS@127.0.0.1:{free_port()}")
    assert deliver(a.id, final=True) is False
    (d,) = reg.deliveries(analysis_id=a.id)
    assert d.status == "failed" and "refused" in d.last_error
