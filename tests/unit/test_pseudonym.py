"""F5 (issue 22): ``patient_ref`` is keyed (HMAC-SHA-256), so an MRN seen in a log cannot be
recovered by hashing every candidate; the key file is made once (0600) beside the registry, an
existing registry is taken over with it, and a changed key is refused.

The refs are read back from the API (its study and procedure lists), as a client or an access log
sees them."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import os
import stat
import threading

import pytest
from fastapi.testclient import TestClient

from followup import pseudonym
from followup.api import create_app
from followup.config import Settings
from followup.pseudonym import (
    FINGERPRINT_SETTING,
    PatientRefKeyError,
    check_registry,
    fingerprint,
    keyed_ref,
    load_key,
    read_or_create_key_file,
)
from followup.service.registry import Registry

TOKEN = "pseudonym-test-Token-0123456789abcdefXYZ"  # >= 128 bits, varied characters
AUTH = {"Authorization": f"Bearer {TOKEN}"}
MRN = "4718263"  # a 7-digit MRN: 10^7 candidates, hashed in seconds when the ref is unkeyed
STUDY_UID = "1.2.826.0.1.3680043.8.498.2201"


def _old_registry(data_dir) -> Settings:
    """A registry as the service kept it before keyed refs: a study received, no key anywhere."""
    settings = Settings(data_dir=data_dir, api_token=TOKEN)
    data_dir.mkdir(parents=True, exist_ok=True)
    reg = Registry(settings.database_url)
    reg.record_instance(study_uid=STUDY_UID, series_uid=STUDY_UID + ".1", sop_uid=STUDY_UID + ".1.1",
                        sop_class_uid="1.2.840.10008.5.1.4.1.1.4", path="x.dcm", size=1, patient_id=MRN,
                        study_date=dt.date(2025, 9, 1), modality="MR", accession_number="ACC1", calling_ae="PACS")
    assert reg.get_setting(FINGERPRINT_SETTING) is None and not settings.patient_ref_key_path.exists()
    return settings


def _unkeyed(patient_id: str) -> str:
    """The ref as it was: sha256(Patient ID), first 12 hex digits."""
    return hashlib.sha256(patient_id.encode()).hexdigest()[:12]


def test_api_ref_is_keyed_and_the_unkeyed_brute_force_no_longer_matches(tmp_path):
    settings = _old_registry(tmp_path / "data")
    client = TestClient(create_app(settings))
    [study] = client.get("/studies", headers=AUTH).json()
    ref = study["patient_ref"]
    # What the attacker of F5 computes for the real MRN does not match what the service shows ...
    assert ref != _unkeyed(MRN)
    # ... and a brute force over the MRN's whole neighbourhood finds nothing either.
    assert not any(_unkeyed(f"{n:07d}") == ref for n in range(4_700_000, 4_740_000))
    # It is the HMAC under the key file beside the registry.
    key = bytes.fromhex(settings.patient_ref_key_path.read_text().strip())
    assert len(key) == 32
    assert ref == hmac.new(key, MRN.encode(), hashlib.sha256).hexdigest()[:12] == keyed_ref(MRN, key)
    # The patient's page answers to the keyed ref, not to the old one.
    assert client.get(f"/patients/{ref}", headers=AUTH).status_code == 200
    assert client.get(f"/patients/{_unkeyed(MRN)}", headers=AUTH).status_code == 404


def test_ref_is_stable_for_one_key_and_changes_with_the_key():
    k1, k2 = os.urandom(32), os.urandom(32)
    assert keyed_ref(MRN, k1) == keyed_ref(MRN, k1)
    assert keyed_ref(MRN, k1) != keyed_ref(MRN, k2)
    assert keyed_ref(MRN, k1) != keyed_ref("4718264", k1)
    assert len(keyed_ref(MRN, k1)) == 12 and all(c in "0123456789abcdef" for c in keyed_ref(MRN, k1))


def test_key_file_is_made_once_0600_and_read_after(tmp_path):
    path = tmp_path / "data" / "patient-ref.key"
    keys: list[bytes] = []
    threads = [threading.Thread(target=lambda: keys.append(read_or_create_key_file(path))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(keys)) == 1  # eight processes racing at first start agree on one key
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["patient-ref.key"]  # no temporary left
    mtime = path.stat().st_mtime_ns
    assert read_or_create_key_file(path) == keys[0] and path.stat().st_mtime_ns == mtime


def test_key_from_settings_environment_wins_and_is_checked(tmp_path, monkeypatch):
    monkeypatch.setenv("FOLLOWUP_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("FOLLOWUP_PATIENT_REF_KEY", "ab" * 32)
    s = Settings.from_env()
    assert load_key(s.patient_ref_key, s.patient_ref_key_path) == bytes.fromhex("ab" * 32)
    assert not s.patient_ref_key_path.exists()  # no file made when the key is given
    assert "ab" * 32 not in repr(s)
    with pytest.raises(PatientRefKeyError, match="at least 32 bytes"):
        load_key("abcd", s.patient_ref_key_path)
    monkeypatch.setenv("FOLLOWUP_PATIENT_REF_KEY_FILE", str(tmp_path / "elsewhere.key"))
    monkeypatch.delenv("FOLLOWUP_PATIENT_REF_KEY")
    s = Settings.from_env()
    assert s.patient_ref_key_path == tmp_path / "elsewhere.key"


def test_old_registry_is_migrated_and_a_changed_key_refused(tmp_path):
    settings = _old_registry(tmp_path / "data")
    reg = Registry(settings.database_url)
    create_app(settings, reg)  # first start with keyed refs
    key = read_or_create_key_file(settings.patient_ref_key_path)
    assert reg.get_setting(FINGERPRINT_SETTING) == fingerprint(key)
    assert pseudonym.patient_ref(MRN) == keyed_ref(MRN, key)
    create_app(settings, reg)  # a restart: same key, accepted
    # The key file lost (or a wrong path): a new key would change every ref; refused.
    settings.patient_ref_key_path.unlink()
    with pytest.raises(PatientRefKeyError, match="not the one this registry was used with"):
        create_app(settings, reg)
    new_key = read_or_create_key_file(settings.patient_ref_key_path)
    check_registry(new_key, reg, accept_new=True)  # `followup patient-ref-key --accept-new`
    client = TestClient(create_app(settings, reg))
    assert client.get("/studies", headers=AUTH).json()[0]["patient_ref"] == keyed_ref(MRN, new_key)


def test_patient_ref_without_a_key_refuses_rather_than_hash_unkeyed(monkeypatch):
    monkeypatch.setattr(pseudonym, "_installed_key", None)
    with pytest.raises(PatientRefKeyError):
        pseudonym.patient_ref(MRN)
