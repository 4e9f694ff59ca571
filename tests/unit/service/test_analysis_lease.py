"""One analysis runs in one worker at a time: a broker redelivery while the first worker still
runs (an analysis longer than the visibility timeout) finds a live heartbeat and does nothing;
a redelivery after the worker died finds the lease expired and takes over."""

from __future__ import annotations

import datetime as dt
import time

import pytest

from followup.config import Settings
from followup.service.orchestrator import heartbeat, new_analysis, process_analysis
from followup.service.registry import Registry, Study, utcnow
from followup.testing.pairs import store_pair, study_uid


@pytest.fixture()
def queued(tmp_path):
    """A registry holding one study and one queued analysis of it."""
    reg = Registry(f"sqlite:///{tmp_path / 'r.db'}")
    with reg.session() as s:
        s.add(Study(study_uid="1.2.3", patient_id="P"))
    return reg, new_analysis(reg, "1.2.3", "realtime")


def test_claim_is_exclusive_while_the_heartbeat_is_live(queued):
    reg, a = queued
    assert reg.claim_analysis(a.id, lease_s=30)
    assert not reg.claim_analysis(a.id, lease_s=30)  # a second worker, same task: refused
    assert reg.lease_held(reg.analysis(a.id), 30)
    assert reg.analysis(a.id).attempts == 1
    # the first worker died: its heartbeat ages past the lease, the redelivery takes over
    reg.update_analysis(a.id, heartbeat_at=utcnow() - dt.timedelta(seconds=31))
    assert not reg.lease_held(reg.analysis(a.id), 30)
    assert reg.claim_analysis(a.id, lease_s=30)
    assert reg.analysis(a.id).attempts == 2


def test_heartbeat_keeps_the_lease_alive(queued):
    reg, a = queued
    assert reg.claim_analysis(a.id, lease_s=1.0)
    with heartbeat(reg, a.id, every_s=0.2):
        time.sleep(1.6)  # longer than the lease: only the heartbeat keeps it held
        assert reg.lease_held(reg.analysis(a.id), 1.0)
    time.sleep(1.2)
    assert not reg.lease_held(reg.analysis(a.id), 1.0)


def test_redelivered_task_of_a_live_analysis_does_nothing(service, synth_pair):
    settings, reg, store = service
    pair = synth_pair("residual", 1, "per-phase")
    store_pair(reg, store, pair)
    a = new_analysis(reg, study_uid(pair, "followup"), "realtime")
    assert reg.claim_analysis(a.id, settings.analysis_lease_s)  # "another worker" holds it
    out = process_analysis(settings, reg, store, a.id)
    assert out.status == "running" and out.deliveries == []
    row = reg.analysis(a.id)
    assert row.status == "running" and row.attempts == 1 and row.report_dir is None
    # that worker died: once its lease expired the redelivery runs the analysis, once
    reg.update_analysis(a.id, heartbeat_at=utcnow() - dt.timedelta(hours=1))
    out = process_analysis(settings, reg, store, a.id)
    assert out.status == "complete"
    row = reg.analysis(a.id)
    assert row.attempts == 2 and row.report_dir


def test_an_older_registry_gets_the_new_column(tmp_path):
    url = f"sqlite:///{tmp_path / 'old.db'}"
    reg = Registry(url)
    with reg.engine.begin() as conn:  # as created before heartbeat_at existed
        conn.exec_driver_sql("ALTER TABLE analyses DROP COLUMN heartbeat_at")
    reg.engine.dispose()
    reg = Registry(url)
    from sqlalchemy import inspect

    assert "heartbeat_at" in {c["name"] for c in inspect(reg.engine).get_columns("analyses")}


def test_lease_is_shorter_than_the_visibility_timeout(monkeypatch):
    monkeypatch.delenv("FOLLOWUP_ANALYSIS_LEASE", raising=False)
    monkeypatch.setenv("FOLLOWUP_VISIBILITY_TIMEOUT", "10")
    assert Settings.from_env().analysis_lease_s == 5.0
    monkeypatch.setenv("FOLLOWUP_VISIBILITY_TIMEOUT", "3600")
    assert Settings.from_env().analysis_lease_s == 60.0
    monkeypatch.setenv("FOLLOWUP_ANALYSIS_LEASE", "0.2")  # set explicitly: taken, never under 1 s
    assert Settings.from_env().analysis_lease_s == 1.0
