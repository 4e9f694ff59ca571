"""Talking to a PACS over DICOMweb (``dicomweb-client``): send results (STOW-RS), find a patient's
studies (QIDO-RS) and fetch one (WADO-RS). The DICOMweb counterpart of ``followup.service.pacs``
(DIMSE), with the same contract: one attempt per call (the client library's own HTTP retries are
off: retries and backoff are the Celery tasks'), and ``DicomWebError`` (a ``PacsError``) with a
reason an administrator can act on.

The endpoint is a base URL (``Settings.destination``/``retrieve_from``, e.g.
``https://pacs.example/dicom-web``); its credentials come from the settings, never from the URL:
HTTP basic (``dicomweb_user``/``dicomweb_password``) or a bearer token (``dicomweb_token``), and
over https the server's certificate must chain to ``dicomweb_ca`` (the system CAs when unset).

Errors never carry the request's URL: a QIDO-RS search names the patient (PatientID) in its
query string, and the error text lands in the registry, the API and the logs.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Iterable
from pathlib import Path

import pydicom
import requests
from dicomweb_client.api import DICOMwebClient
from pydicom.dataset import Dataset
from requests.adapters import HTTPAdapter

from followup.config import Settings
from followup.remote_nodes import DicomWebEndpoint
from followup.service.pacs import RETRIEVED_SOP_CLASSES, TIMEOUT_S, PacsError, StudyMatch, store_retrieved
from followup.service.store import Store, checked_uid

log = logging.getLogger(__name__)
# The retry helper under dicomweb-client logs a WARNING with a traceback for each failed request.
# Its retries are off (``client``) and the caller logs the failure in one line (DicomWebError).
logging.getLogger("retrying").setLevel(logging.ERROR)
ANY_TRANSFER_SYNTAX = (("application/dicom", "*"),)  # WADO-RS: instances as stored, not transcoded
AUTH_HINT = " (check FOLLOWUP_DICOMWEB_USER/FOLLOWUP_DICOMWEB_PASSWORD or FOLLOWUP_DICOMWEB_TOKEN)"


class DicomWebError(PacsError):
    pass


class _TrustOnly(HTTPAdapter):
    """An https adapter that verifies servers against one CA bundle, whatever the environment says:
    requests lets REQUESTS_CA_BUNDLE/CURL_CA_BUNDLE override a session's ``verify``."""

    def __init__(self, ca: Path) -> None:
        super().__init__()
        self.ca = str(ca)

    def send(self, request, **kwargs):  # type: ignore[override]
        kwargs["verify"] = self.ca
        return super().send(request, **kwargs)


def session(settings: Settings) -> requests.Session:
    """An HTTP session carrying the settings' DICOMweb credentials and CA bundle."""
    s = requests.Session()
    if settings.dicomweb_ca is not None:
        s.verify = str(settings.dicomweb_ca)
        s.mount("https://", _TrustOnly(settings.dicomweb_ca))
    if settings.dicomweb_user is not None and settings.dicomweb_password is not None:
        s.auth = (settings.dicomweb_user, settings.dicomweb_password)
    elif settings.dicomweb_token:
        s.headers["Authorization"] = f"Bearer {settings.dicomweb_token}"
    return s


def client(settings: Settings, endpoint: DicomWebEndpoint) -> DICOMwebClient:
    """A DICOMweb client of ``endpoint`` making one HTTP attempt per request."""
    c = DICOMwebClient(url=endpoint.url, session=session(settings), timeout=TIMEOUT_S)
    c.set_http_retry_params(retry=False)
    return c


def failure(endpoint: DicomWebEndpoint, what: str, exc: Exception) -> DicomWebError:
    """``exc`` (from requests or the client library) as a DicomWebError naming the endpoint, the
    operation and the cause, without the request's URL."""
    if isinstance(exc, requests.HTTPError) and exc.response is not None:
        code = exc.response.status_code
        hint = AUTH_HINT if code in (401, 403) else ""
        return DicomWebError(f"{endpoint} answered HTTP {code} {exc.response.reason} to {what}{hint}")
    if isinstance(exc, requests.exceptions.SSLError):
        return DicomWebError(f"TLS with {endpoint} failed for {what}: its certificate must chain to "
                             "FOLLOWUP_DICOMWEB_CA (or the system CAs) and name its host")
    if isinstance(exc, requests.Timeout):
        return DicomWebError(f"{endpoint} did not answer {what} within {TIMEOUT_S} s")
    if isinstance(exc, requests.ConnectionError):
        return DicomWebError(f"{endpoint} not reachable for {what} (connection refused or lost)")
    return DicomWebError(f"{what} at {endpoint} failed ({type(exc).__name__})")


def store_files(settings: Settings, endpoint: DicomWebEndpoint, paths: list[Path]) -> None:
    """STOW-RS every file to ``endpoint`` in one request; raise unless the server stored them all."""
    datasets = [pydicom.dcmread(p) for p in paths]
    try:
        answer = client(settings, endpoint).store_instances(datasets)
    except (requests.RequestException, ValueError) as exc:
        raise failure(endpoint, "STOW-RS", exc) from None
    refused = [str(item.get("ReferencedSOPInstanceUID", "?")) for item in answer.get("FailedSOPSequence", [])]
    if refused:
        raise DicomWebError(f"{endpoint} refused {len(refused)} of {len(datasets)} instances (STOW-RS): "
                            + ", ".join(refused))


def _date(value: object) -> dt.date | None:
    text = str(value or "")
    return dt.date(int(text[:4]), int(text[4:6]), int(text[6:8])) if len(text) >= 8 and text[:8].isdigit() else None


def find_studies(settings: Settings, endpoint: DicomWebEndpoint, patient_id: str, before: dt.date,
                 after: dt.date | None = None) -> list[StudyMatch]:
    """QIDO-RS the patient's MR studies dated before ``before`` (and on or after ``after`` when
    given), as ``pacs.find_studies`` does with C-FIND."""
    dates = (after.strftime("%Y%m%d") if after else "") + f"-{(before - dt.timedelta(days=1)).strftime('%Y%m%d')}"
    filters = {"PatientID": patient_id, "StudyDate": dates, "ModalitiesInStudy": "MR"}
    try:
        found = client(settings, endpoint).search_for_studies(
            search_filters=filters, fields=["StudyDate", "ModalitiesInStudy"])
    except (requests.RequestException, ValueError) as exc:
        raise failure(endpoint, "QIDO-RS study search", exc) from None
    out = []
    for item in found:
        ds = Dataset.from_json(item)
        out.append(StudyMatch(checked_uid(str(ds.get("StudyInstanceUID", "")), "Study Instance UID"),
                              _date(ds.get("StudyDate"))))
    return out


def get_study(settings: Settings, endpoint: DicomWebEndpoint, study_uid: str, store: Store,
              on_instance: Callable[[Path, Dataset], None]) -> int:
    """WADO-RS a whole study into the store, its MR images only (``pacs.RETRIEVED_SOP_CLASSES``,
    what C-GET accepts), as stored (no transcoding); ``on_instance(path, ds)`` registers each one.
    The number of instances stored."""
    uid = checked_uid(study_uid, "Study Instance UID")
    try:
        return _store_instances(client(settings, endpoint).iter_study(uid, media_types=ANY_TRANSFER_SYNTAX),
                                uid, store, on_instance)
    except (requests.RequestException, ValueError) as exc:
        raise failure(endpoint, f"WADO-RS of study {uid}", exc) from None


def _store_instances(instances: Iterable[Dataset], study_uid: str, store: Store,
                     on_instance: Callable[[Path, Dataset], None]) -> int:
    count = skipped = 0
    for ds in instances:
        if str(ds.get("SOPClassUID", "")) not in RETRIEVED_SOP_CLASSES or str(ds.get("StudyInstanceUID")) != study_uid:
            skipped += 1  # our own SR/SEG/PDF stored with the study, or what the request did not ask for
            continue
        store_retrieved(store, ds, on_instance)
        count += 1
    if skipped:
        log.info("study %s: %d instances that are not MR images left out of the retrieval", study_uid, skipped)
    return count


__all__ = ["DicomWebError", "client", "find_studies", "get_study", "session", "store_files"]
