"""DICOMweb configuration (a destination or retrieval PACS given as a URL, its credentials and CA
bundle) and the failure paths of STOW-RS delivery and QIDO-RS search: a server that is down or
refuses our credentials leaves the results pending (then failed after the last retry), never
lost, and no error text carries the patient's identifier or our secret. The exchanges with a real
DICOMweb server (Orthanc) are in tests/integration/test_dicomweb.py."""

from __future__ import annotations

import datetime as dt
import threading
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from followup.cli.serve import listener_settings
from followup.config import Settings
from followup.config_check import insecure_settings
from followup.remote_nodes import DicomNode, DicomWebEndpoint, parse_remote
from followup.service import dicomweb
from followup.service.delivery import deliver_pending
from followup.service.registry import Registry
from followup.testing.service_harness import free_port

PATIENT_ID = "PAT-ID-4711"
BASIC_TEXT_SR = "1.2.840.10008.5.1.4.1.1.88.11"


# --- configuration ---------------------------------------------------------------------------------
def test_a_url_is_a_dicomweb_endpoint_and_aet_at_host_a_dimse_node():
    web = parse_remote("HTTPS://pacs.example:8443/dicom-web/")
    assert isinstance(web, DicomWebEndpoint)
    assert web.url == "https://pacs.example:8443/dicom-web" and web.tls and web.host == "pacs.example"
    assert not parse_remote("http://127.0.0.1:8042/dicom-web").tls
    assert parse_remote("PACS@pacs:104/tls") == DicomNode("PACS", "pacs", 104, tls=True)


@pytest.mark.parametrize("text, says", [
    ("https://user:secret@pacs/dicom-web", "user name or password"),
    ("https://pacs/dicom-web?PatientID=1", "no query"),
    ("https://pacs/dicom-web#x", "no query"),
    ("https://pacs:99999/dicom-web", "(?i)port"),
    ("https:///dicom-web", "base URL"),
    ("https://pacs/" + "x" * 130, "at most 128"),
])
def test_a_bad_dicomweb_url_is_refused_with_its_reason(text, says):
    with pytest.raises(ValueError, match=says):
        parse_remote(text)


def test_the_password_never_travels_in_the_url_error():
    with pytest.raises(ValueError) as exc:
        parse_remote("https://user:secret@pacs/dicom-web")
    assert "secret" not in str(exc.value)


def _env(monkeypatch, **values: str) -> None:
    for key in ("FOLLOWUP_DESTINATION", "FOLLOWUP_RETRIEVE", "FOLLOWUP_TLS_DESTINATION", "FOLLOWUP_TLS_RETRIEVE",
                "FOLLOWUP_DICOMWEB_USER", "FOLLOWUP_DICOMWEB_PASSWORD", "FOLLOWUP_DICOMWEB_TOKEN",
                "FOLLOWUP_DICOMWEB_CA", "FOLLOWUP_VIEWER_URL"):
        monkeypatch.delenv(key, raising=False)
    for key, value in values.items():
        monkeypatch.setenv(key, value)


def test_settings_read_the_dicomweb_destination_its_credentials_and_ca(monkeypatch, tmp_path):
    _env(monkeypatch, FOLLOWUP_DESTINATION="https://pacs/dicom-web", FOLLOWUP_RETRIEVE="https://vna/qido",
         FOLLOWUP_DICOMWEB_USER="followup", FOLLOWUP_DICOMWEB_PASSWORD="pw-0123",
         FOLLOWUP_DICOMWEB_CA=str(tmp_path / "ca.pem"), FOLLOWUP_TLS_DESTINATION="1")
    s = Settings.from_env(data_dir=tmp_path)
    assert s.destination == DicomWebEndpoint("https://pacs/dicom-web")
    assert s.retrieve_from == DicomWebEndpoint("https://vna/qido")
    assert (s.dicomweb_user, s.dicomweb_password, s.dicomweb_ca) == ("followup", "pw-0123", tmp_path / "ca.pem")
    assert "pw-0123" not in repr(s)
    _env(monkeypatch, FOLLOWUP_DESTINATION="https://pacs/dicom-web", FOLLOWUP_DICOMWEB_TOKEN="tok-0123")
    s = Settings.from_env(data_dir=tmp_path)
    assert s.dicomweb_token == "tok-0123" and "tok-0123" not in repr(s)


@pytest.mark.parametrize("values, says", [
    ({"FOLLOWUP_DICOMWEB_USER": "followup"}, "both"),
    ({"FOLLOWUP_DICOMWEB_USER": "u", "FOLLOWUP_DICOMWEB_PASSWORD": "p", "FOLLOWUP_DICOMWEB_TOKEN": "t"}, "not both"),
    ({"FOLLOWUP_DESTINATION": "http://pacs/dicom-web", "FOLLOWUP_TLS_DESTINATION": "1"}, "write https"),
    ({"FOLLOWUP_RETRIEVE": "http://pacs/dicom-web", "FOLLOWUP_TLS_RETRIEVE": "1"}, "write https"),
])
def test_contradictory_dicomweb_settings_are_refused(monkeypatch, tmp_path, values, says):
    _env(monkeypatch, **values)
    with pytest.raises(ValueError, match=says):
        Settings.from_env(data_dir=tmp_path)


def test_serve_dicom_takes_a_dicomweb_destination(monkeypatch, tmp_path):
    _env(monkeypatch, FOLLOWUP_DATA_DIR=str(tmp_path))
    assert listener_settings("https://pacs/dicom-web", True).destination == DicomWebEndpoint("https://pacs/dicom-web")
    with pytest.raises(ValueError, match="write https"):
        listener_settings("http://pacs/dicom-web", True)


def test_check_config_flags_a_dicomweb_url_in_clear(tmp_path):
    plain = Settings(data_dir=tmp_path, destination=DicomWebEndpoint("http://pacs/dicom-web"),
                     retrieve_from=DicomWebEndpoint("http://pacs/dicom-web"))
    codes = {f.code for f in insecure_settings(plain, "worker")}
    assert {"destination-no-tls", "retrieve-no-tls"} <= codes
    tls = Settings(data_dir=tmp_path, destination=DicomWebEndpoint("https://pacs/dicom-web"),
                   retrieve_from=DicomWebEndpoint("https://pacs/dicom-web"))
    assert not {"destination-no-tls", "retrieve-no-tls"} & {f.code for f in insecure_settings(tls, "worker")}


def test_the_session_carries_basic_or_bearer_and_the_ca(tmp_path):
    basic = dicomweb.session(Settings(data_dir=tmp_path, dicomweb_user="u", dicomweb_password="p",
                                      dicomweb_ca=tmp_path / "ca.pem"))
    assert basic.auth == ("u", "p") and basic.verify == str(tmp_path / "ca.pem")
    assert "Authorization" not in basic.headers
    bearer = dicomweb.session(Settings(data_dir=tmp_path, dicomweb_token="tok"))
    assert bearer.headers["Authorization"] == "Bearer tok" and bearer.auth is None and bearer.verify is True


# --- failure paths ---------------------------------------------------------------------------------
class _Refusing(BaseHTTPRequestHandler):
    """A web server that refuses every request (401) and keeps each request's Authorization header
    and path: what our client sent."""
    seen: ClassVar[list[tuple[str, str]]] = []

    def _refuse(self) -> None:
        type(self).seen.append((self.path, self.headers.get("Authorization", "")))
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        elif self.headers.get("Transfer-Encoding") == "chunked":
            while (size := int(self.rfile.readline().strip() or b"0", 16)) > 0:
                self.rfile.read(size + 2)
            self.rfile.readline()
        self.send_response(401)
        self.send_header("WWW-Authenticate", 'Bearer realm="pacs"')
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_POST = _refuse

    def log_message(self, *args) -> None:
        pass


@contextmanager
def refusing_server():
    _Refusing.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Refusing)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/dicom-web", _Refusing.seen
    finally:
        server.shutdown()
        server.server_close()


def _result_file(folder: Path) -> Path:
    """A small DICOM object (a Basic Text SR header) to deliver."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = BASIC_TEXT_SR
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = BASIC_TEXT_SR, meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.PatientID, ds.Modality = PATIENT_ID, "SR"
    path = folder / "sr.dcm"
    pydicom.dcmwrite(path, ds, enforce_file_format=True)
    return path


def _pending(tmp_path: Path, url: str):
    reg = Registry(f"sqlite:///{tmp_path}/r.db")
    path = _result_file(tmp_path)
    study = str(pydicom.dcmread(path).StudyInstanceUID)
    reg.record_instance(study_uid=study, series_uid="1.2", sop_uid="1.2.3", sop_class_uid="1.2", path="/x", size=1,
                        patient_id=PATIENT_ID, study_date=None, modality="MR", accession_number="", calling_ae="PACS")
    a = reg.get_or_create_analysis(study, "t", 1, "realtime")
    reg.add_delivery(a.id, "sr", str(pydicom.dcmread(path).SOPInstanceUID), str(path), url)
    return reg, a


def test_server_down_leaves_the_result_pending_then_failed_after_the_last_retry(tmp_path):
    url = f"http://127.0.0.1:{free_port()}/dicom-web"  # nobody listens
    reg, a = _pending(tmp_path, url)
    settings = Settings(data_dir=tmp_path / "data")
    assert deliver_pending(settings, reg, a.id) is False
    (d,) = reg.deliveries(analysis_id=a.id)
    assert d.status == "pending" and d.attempts == 1 and "not reachable" in d.last_error
    assert Path(d.path).is_file()  # the result is kept for the next try
    assert deliver_pending(settings, reg, a.id, final=True) is False
    (d,) = reg.deliveries(analysis_id=a.id)
    assert d.status == "failed" and d.attempts == 2 and Path(d.path).is_file()


def test_refused_credentials_leave_the_result_pending_and_say_why(tmp_path):
    with refusing_server() as (url, seen):
        reg, a = _pending(tmp_path, url)
        settings = Settings(data_dir=tmp_path / "data", dicomweb_token="tok-0123456789")
        assert deliver_pending(settings, reg, a.id) is False
    (d,) = reg.deliveries(analysis_id=a.id)
    assert d.status == "pending" and d.attempts == 1
    assert "HTTP 401" in d.last_error and "FOLLOWUP_DICOMWEB_TOKEN" in d.last_error
    assert "tok-0123456789" not in d.last_error
    assert seen == [("/dicom-web/studies", "Bearer tok-0123456789")]  # one attempt, our token sent


def test_a_failed_search_names_neither_the_patient_nor_the_url_query(tmp_path, caplog):
    settings = Settings(data_dir=tmp_path, dicomweb_user="u", dicomweb_password="p")
    with refusing_server() as (url, seen), pytest.raises(dicomweb.DicomWebError) as refused:
        dicomweb.find_studies(settings, DicomWebEndpoint(url), PATIENT_ID, dt.date(2026, 1, 1))
    assert PATIENT_ID in seen[0][0]  # QIDO-RS asks by PatientID ...
    assert "HTTP 401" in str(refused.value) and PATIENT_ID not in str(refused.value)  # ... the error does not say it
    down = DicomWebEndpoint(f"http://127.0.0.1:{free_port()}/dicom-web")
    with pytest.raises(dicomweb.DicomWebError) as unreachable:
        dicomweb.find_studies(settings, down, PATIENT_ID, dt.date(2026, 1, 1))
    assert "not reachable" in str(unreachable.value) and PATIENT_ID not in str(unreachable.value)
    logged = [r.getMessage() + str(r.exc_info or "") for r in caplog.records]
    assert not [m for m in logged if PATIENT_ID in m]  # nor does any log line (the client libraries' included)
