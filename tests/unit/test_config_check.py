"""F7 (issue 22): ``followup check-config`` names every insecure setting, and none of a secure one."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from followup.cli import app
from followup.config import Settings
from followup.config_check import file_system_type, insecure_settings, is_loopback
from followup.remote_nodes import DicomNode

EVERY_CODE = {"api-plain-public", "api-token-short", "dicom-no-tls", "dicom-ae-only", "destination-no-tls",
              "retrieve-no-tls", "patient-ref-key-mode", "data-dir-mode", "flower-exposed"}


STRONG = "Strong-Token-0123456789-abcdefghijKLMNOPQRSTU"  # what the API accepts

def _file(path: Path, mode: int) -> Path:
    path.write_text("x")
    path.chmod(mode)
    return path


def _insecure(tmp_path: Path) -> Settings:
    data = tmp_path / "data"
    data.mkdir(mode=0o755)
    data.chmod(0o755)
    _file(data / "patient-ref.key", 0o644)
    return Settings(data_dir=data, api_token="s3cr", api_host="0.0.0.0", dicom_host="0.0.0.0",
                    destination=DicomNode("PACS", "pacs", 104), retrieve_from=DicomNode("PACS", "pacs", 104),
                    flower_address="0.0.0.0:5555")


def _secure(tmp_path: Path) -> Settings:
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    _file(data / "patient-ref.key", 0o600)
    cert, key = _file(tmp_path / "c.pem", 0o644), _file(tmp_path / "c.key", 0o600)
    ca = _file(tmp_path / "ca.pem", 0o644)
    return Settings(data_dir=data, api_token=STRONG, api_host="0.0.0.0", dicom_host="0.0.0.0", tls_cert=cert,
                    tls_key=key, tls_ca=ca, api_tls_cert=cert, api_tls_key=key,
                    destination=DicomNode("PACS", "pacs", 104, tls=True),
                    retrieve_from=DicomNode("PACS", "pacs", 104, tls=True), flower_address="127.0.0.1:5555")


def test_every_insecure_setting_is_found(tmp_path):
    findings = insecure_settings(_insecure(tmp_path))
    codes = [f.code for f in findings]
    assert set(codes) == EVERY_CODE and len(codes) == len(set(codes))
    # Each finding names what to change; none quotes a secret.
    assert all("FOLLOWUP_" in f.message or "chmod" in f.message or "Flower" in f.message for f in findings)
    assert not any("s3cr" in f.message for f in findings)


def test_private_keys_readable_by_others_are_found(tmp_path):
    s = _secure(tmp_path)
    s.tls_key.chmod(0o640)  # group-readable: the API's and the listener's key (one file here)
    found = insecure_settings(s)
    assert [f.code for f in found] == ["tls-key-mode", "tls-key-mode"]
    assert {f.roles for f in found} == {frozenset({"dicom", "worker"}), frozenset({"api"})}


def test_plain_api_on_loopback_is_its_own_milder_finding(tmp_path):
    s = Settings(data_dir=tmp_path, api_token=STRONG)  # api_host defaults to 127.0.0.1
    assert [f.code for f in insecure_settings(s, "api")] == ["api-no-tls"]


def test_a_secure_deployment_has_no_finding(tmp_path):
    assert insecure_settings(_secure(tmp_path)) == []


def test_findings_by_role(tmp_path):
    s = _insecure(tmp_path)
    api = {f.code for f in insecure_settings(s, "api")}
    dicom = {f.code for f in insecure_settings(s, "dicom")}
    worker = {f.code for f in insecure_settings(s, "worker")}
    common = {"patient-ref-key-mode", "data-dir-mode", "flower-exposed"}
    assert api == {"api-plain-public", "api-token-short"} | common
    assert dicom == {"dicom-no-tls", "dicom-ae-only", "destination-no-tls", "retrieve-no-tls"} | common
    assert worker == {"destination-no-tls", "retrieve-no-tls"} | common


def test_sqlite_on_a_network_share_is_found(tmp_path, monkeypatch):
    mounts = tmp_path / "mounts"
    share = tmp_path / "share"
    share.mkdir(mode=0o700)
    mounts.write_text(f"/dev/sda1 / ext4 rw 0 0\nnas:/export {share} nfs4 rw 0 0\n")
    assert file_system_type(share / "followup.db", mounts) == "nfs4"
    assert file_system_type(tmp_path, mounts) == "ext4"
    import followup.config_check as cc

    monkeypatch.setattr(cc, "file_system_type", lambda path: file_system_type(path, mounts))
    s = Settings(data_dir=share, api_token=STRONG)
    assert "sqlite-shared" in {f.code for f in insecure_settings(s)}


@pytest.mark.parametrize("host, loop", [("127.0.0.1", True), ("::1", True), ("[::1]", True), ("localhost", True),
                                        ("0.0.0.0", False), ("::", False), ("10.1.2.3", False), ("api", False)])
def test_is_loopback(host, loop):
    assert is_loopback(host) is loop


def _env(monkeypatch, **values: str) -> None:
    for key in [k for k in os.environ if k.startswith("FOLLOWUP_")]:
        monkeypatch.delenv(key)
    for key, value in values.items():
        monkeypatch.setenv(key, value)


def test_check_config_command_prints_findings_and_exits_1(tmp_path, monkeypatch):
    _env(monkeypatch, FOLLOWUP_DATA_DIR=str(tmp_path / "d"), FOLLOWUP_API_TOKEN="abc",
         FOLLOWUP_DESTINATION="PACS@pacs:104")
    res = CliRunner().invoke(app, ["check-config"])
    assert res.exit_code == 1, res.output
    for code in ("api-no-tls", "api-token-short", "dicom-no-tls", "dicom-ae-only", "destination-no-tls"):
        assert f"WARNING [{code}]" in res.output
    assert "abc" not in res.output  # the token itself is never printed


def test_check_config_command_exits_0_when_secure(tmp_path, monkeypatch):
    s = _secure(tmp_path)
    _env(monkeypatch, FOLLOWUP_DATA_DIR=str(s.data_dir), FOLLOWUP_API_TOKEN=s.api_token or "",
         FOLLOWUP_API_HOST="0.0.0.0", FOLLOWUP_TLS_CERT=str(s.tls_cert), FOLLOWUP_TLS_KEY=str(s.tls_key),
         FOLLOWUP_TLS_CA=str(s.tls_ca), FOLLOWUP_API_TLS_CERT=str(s.api_tls_cert),
         FOLLOWUP_API_TLS_KEY=str(s.api_tls_key), FOLLOWUP_DESTINATION="PACS@pacs:104/tls")
    res = CliRunner().invoke(app, ["check-config"])
    assert res.exit_code == 0, res.output
    assert "no insecure setting found" in res.output
