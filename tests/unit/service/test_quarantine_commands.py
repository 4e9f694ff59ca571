"""``followup quarantine list | show | release | discard`` and ``/admin/quarantine``: the two
faces of ``followup.service.quarantine`` (its cases: tests/unit/service/listener/test_study_patient.py).
Each action records who did it: the CLI's ``--by`` (default the OS user), the API's identity."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient
from pydicom.uid import MRImageStorage, generate_uid
from typer.testing import CliRunner

from followup.api import create_app
from followup.cli import app
from followup.config import Settings
from followup.service.listener import StoreHandler
from followup.service.registry import Registry
from followup.service.store import Store
from followup.states import StudyState
from followup.testing.instances import encode, mr

TOKEN = "quarantine-Test-token-0123456789-abcdefXYZ"  # >= 128 bits (the API refuses weaker)


@pytest.fixture
def data(tmp_path, monkeypatch):
    """A data dir whose quarantine holds a stray (entry 1) and a refused non-DICOM input (2)."""
    monkeypatch.delenv("FOLLOWUP_DB_URL", raising=False)
    settings = Settings(data_dir=tmp_path / "data", api_token=TOKEN)
    store, registry = Store(settings.data_dir, sync=False), Registry(settings.database_url, sync=False)
    handler = StoreHandler(store, registry)
    study = generate_uid()
    for patient in ("P-1", "P-2"):
        ds = mr(study_uid=study, patient=patient)
        handler.handle(encode(ds), MRImageStorage, str(ds.SOPInstanceUID), "PACS")
    handler.handle(b"garbage", MRImageStorage, "1.2.3.4", "PACS")
    return settings, registry, study


def cli(settings, *args):
    return CliRunner().invoke(app, ["--data-dir", str(settings.data_dir), "quarantine", *args])


def test_cli_list_show_release_discard(data):
    settings, registry, _study = data
    res = cli(settings, "list")
    assert res.exit_code == 0, res.output
    assert "#1" in res.output and "stray" in res.output and "#2" in res.output and "P-2" not in res.output
    rows = json.loads(cli(settings, "list", "--json").output)
    assert {r["kind"] for r in rows} == {"stray", "refused"}
    shown = json.loads(cli(settings, "show", "1").output)
    assert shown["study"]["same_patient"] is False and shown["file_kept"] and "P-2" not in json.dumps(shown)
    assert cli(settings, "show", "99").exit_code == 3

    res = cli(settings, "release", "2", "--by", "dr-admin")  # not DICOM: refused again, stays held
    assert res.exit_code == 1 and "refused again" in res.output
    res = cli(settings, "discard", "2", "--by", "dr-admin", "--why", "garbage")
    assert res.exit_code == 0 and "#2: discarded" in res.output
    e = registry.quarantine_entry(2)
    assert (e.state, e.action_by, e.action_note) == ("discarded", "dr-admin", "garbage")
    assert cli(settings, "discard", "2").exit_code == 1  # not held any more

    res = cli(settings, "discard", "1")  # --by defaults to the OS user
    assert res.exit_code == 0 and registry.quarantine_entry(1).action_by
    assert "nothing held" in cli(settings, "list").output
    assert len(json.loads(cli(settings, "list", "--state", "all", "--json").output)) == 2
    assert cli(settings, "list", "--state", "bogus").exit_code == 2


def test_status_shows_the_review_flag(data):
    settings, _registry, study = data
    res = CliRunner().invoke(app, ["--data-dir", str(settings.data_dir), "status", study])
    detail = json.loads(res.output)
    assert detail["review"] and detail["quarantined"] == 1
    res = CliRunner().invoke(app, ["--data-dir", str(settings.data_dir), "status"])
    assert "REVIEW" in res.output


def test_cli_releases_a_study_quarantined_whole(data):
    settings, registry, study = data
    registry.mark_study(study, StudyState.QUARANTINED, reason="mixed patients")
    res = cli(settings, "release", study, "--by", "dr-admin")
    assert res.exit_code == 0, res.output
    assert "study state: receiving" in res.output and "#1: kept" in res.output  # the stray stays held
    assert registry.study(study).state == StudyState.RECEIVING


def test_api_list_show_release_discard(data):
    settings, registry, study = data
    client = TestClient(create_app(settings, registry))
    auth = {"Authorization": f"Bearer {TOKEN}"}
    assert client.get("/admin/quarantine").status_code == 401
    assert client.post("/admin/quarantine/1/discard").status_code == 401
    rows = client.get("/admin/quarantine", headers=auth).json()
    assert sorted(r["id"] for r in rows) == [1, 2] and "P-2" not in json.dumps(rows)
    assert client.get(f"/admin/quarantine?study={study}", headers=auth).json()[0]["id"] == 1
    assert client.get("/admin/quarantine?study=../x", headers=auth).status_code == 400
    assert client.get("/admin/quarantine/1", headers=auth).json()["kind"] == "stray"
    assert client.get("/admin/quarantine/99", headers=auth).status_code == 404

    r = client.post("/admin/quarantine/1/release", headers=auth, json={"why": "check"})
    assert r.status_code == 409 and "refused again" in r.json()["detail"]
    r = client.post("/admin/quarantine/1/discard", headers=auth, json={"why": "misfiled"})
    assert r.status_code == 200 and r.json()["done"] == {"1": "discarded"}
    e = registry.quarantine_entry(1)
    assert (e.state, e.action_by, e.action_note) == ("discarded", "service", "misfiled")  # the signed-in admin
    from followup.service import audit
    rows = [r for r in audit.events(registry, limit=100) if r.action.startswith("quarantine.")]
    acts = {(r.action, r.outcome) for r in rows}
    assert {("quarantine.read", "ok"), ("quarantine.release", "failed"), ("quarantine.discard", "ok")} <= acts
    assert all(r.actor == "service" and r.role == "admin" for r in rows)
    assert client.post("/admin/quarantine/1/discard", headers=auth).status_code == 409

    registry.mark_study(study, StudyState.QUARANTINED, reason="mixed patients")
    r = client.post(f"/admin/quarantine/studies/{study}/release", headers=auth)
    assert r.status_code == 200 and r.json()["study_state"] == "receiving"
    assert client.post(f"/admin/quarantine/studies/{generate_uid()}/discard", headers=auth).status_code == 404
    assert client.get("/admin/quarantine?state=all", headers=auth).json()[0]["kind"] == "study"


def test_api_quarantine_is_for_admins_only(data):
    from followup.service.users import add_user

    settings, registry, _study = data
    client = TestClient(create_app(settings, registry))
    viewer = add_user(registry, "Dr View", "viewer")
    assert client.get("/admin/quarantine", headers={"Authorization": f"Bearer {viewer}"}).status_code == 403
    assert client.post("/admin/quarantine/1/discard", headers={"Authorization": f"Bearer {viewer}"}).status_code == 403
