"""Talking to the PACS as an SCU (pynetdicom): send results (C-STORE), fetch a baseline (C-FIND +
C-GET). Retries and backoff live in the Celery tasks; these functions do one attempt and raise
``PacsError`` with a reason a PACS administrator can act on.

A node marked TLS (``AET@HOST:PORT/tls``, or FOLLOWUP_TLS_DESTINATION / FOLLOWUP_TLS_RETRIEVE)
is reached over DICOM TLS with the ``ssl_context`` the caller passes: ``scu_context(settings,
node)`` makes ours (the PACS's certificate must chain to ``Settings.tls_ca``, the system CAs when
unset, and name its host; ``tls_cert``/``tls_key`` are our client certificate).
"""

from __future__ import annotations

import datetime as dt
import io
import logging
import ssl
from dataclasses import dataclass
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset
from pynetdicom import AE, build_role, evt
from pynetdicom.sop_class import (  # type: ignore[attr-defined]  # generated at import
    EnhancedMRImageStorage,
    LegacyConvertedEnhancedMRImageStorage,
    MRImageStorage,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
)

from followup.config import Settings
from followup.remote_nodes import DicomNode
from followup.service import tls
from followup.service.store import Store, checked_uid

log = logging.getLogger(__name__)
TIMEOUT_S = 30
# What a retrieval keeps: MR images (C-GET negotiates these; WADO-RS leaves the rest of a study out)
RETRIEVED_SOP_CLASSES = (MRImageStorage, EnhancedMRImageStorage, LegacyConvertedEnhancedMRImageStorage)


class PacsError(RuntimeError):
    pass


def scu_context(settings: Settings, node: DicomNode) -> ssl.SSLContext | None:
    """Our SCU's TLS context for ``node`` from the settings' certificate, key and CA bundle;
    None for a node reached without TLS."""
    if not node.tls:
        return None
    return tls.client_context(settings.tls_cert, settings.tls_key, settings.tls_ca)


def _tls_args(node: DicomNode, ssl_context: ssl.SSLContext | None) -> tuple[ssl.SSLContext, str] | None:
    """pynetdicom's ``tls_args`` for ``node``: None for plain DICOM."""
    if not node.tls:
        return None
    if ssl_context is None:
        raise PacsError(f"{node} is reached over TLS: pass its ssl_context (pacs.scu_context(settings, node))")
    return ssl_context, node.host


def _refused(node: DicomNode, what: str = "") -> PacsError:
    hint = " (TLS: check the certificates on both sides)" if node.tls else ""
    return PacsError(f"association with {node}{what} refused or not reachable{hint}")


def keep_responses(assoc) -> None:
    """Make sure a DIMSE response on ``assoc`` reaches the ``send_*()`` call that waits for it.

    pynetdicom 3.0's reactor pauses for a ``send_*()`` by a flag that it raises just before it tests
    the checkpoint (``Association._run_reactor``), so a sender that clears the checkpoint in that
    instant goes on while the reactor runs one more turn. If the response is already in, the reactor
    takes it off the queue, logs "Received unexpected C-STORE service message" and drops it. The
    sender then times out after the DIMSE timeout, and the object, which the PACS stored, is sent
    again on the retry. This happened under load in our tests (the load test and a worker-restart
    test). A response is never a request that the reactor should serve, so put it back where the
    sender reads it."""
    serve = assoc._serve_request

    def serve_or_hand_back(msg, context_id: int) -> None:
        if msg.is_valid_request:
            serve(msg, context_id)
            return
        log.info("a DIMSE response taken by the association's reactor handed back to its sender")
        assoc.dimse.msg_queue.put((context_id, msg))

    assoc._serve_request = serve_or_hand_back


def _associate(ae: AE, node: DicomNode, ssl_context: ssl.SSLContext | None, what: str = "", **kwargs):
    """An established association with ``node`` (``kwargs``: more of ``AE.associate``'s) whose
    responses reach their callers (``keep_responses``); ``PacsError`` when refused or unreachable."""
    assoc = ae.associate(node.host, node.port, ae_title=node.ae_title, tls_args=_tls_args(node, ssl_context),
                         **kwargs)
    if not assoc.is_established:
        raise _refused(node, what)
    keep_responses(assoc)
    return assoc


def send_files(paths: list[Path], destination: DicomNode, calling_ae: str, *,
               ssl_context: ssl.SSLContext | None = None) -> None:
    """C-STORE every file to ``destination`` in one association; raise on any failure."""
    datasets = [pydicom.dcmread(p) for p in paths]
    ae = AE(ae_title=calling_ae)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = TIMEOUT_S
    for ds in datasets:
        ae.add_requested_context(ds.SOPClassUID, ds.file_meta.TransferSyntaxUID)
    assoc = _associate(ae, destination, ssl_context)
    try:
        for ds in datasets:
            status = assoc.send_c_store(ds)
            code = getattr(status, "Status", None)
            if code is None:
                raise PacsError(f"no C-STORE response from {destination} (connection lost?)")
            if code not in (0x0000, 0xB000, 0xB007, 0xB006):
                raise PacsError(f"{destination} answered C-STORE status 0x{code:04X} for {ds.SOPInstanceUID}")
    finally:
        assoc.release()


@dataclass(frozen=True)
class StudyMatch:
    study_uid: str
    study_date: dt.date | None


def find_studies(source: DicomNode, calling_ae: str, patient_id: str, before: dt.date, *,
                 ssl_context: ssl.SSLContext | None = None, after: dt.date | None = None) -> list[StudyMatch]:
    """C-FIND (study root) the patient's MR studies dated before ``before`` (and on or after
    ``after`` when given: a follow-up's earlier follow-ups)."""
    ae = AE(ae_title=calling_ae)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = TIMEOUT_S
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
    q = Dataset()
    q.QueryRetrieveLevel = "STUDY"
    q.PatientID = patient_id
    q.StudyDate = (after.strftime("%Y%m%d") if after else "") + f"-{(before - dt.timedelta(days=1)).strftime('%Y%m%d')}"
    q.ModalitiesInStudy = "MR"
    q.StudyInstanceUID = ""
    assoc = _associate(ae, source, ssl_context, " for C-FIND")
    out = []
    try:
        for status, ident in assoc.send_c_find(q, StudyRootQueryRetrieveInformationModelFind):
            if status and status.Status in (0xFF00, 0xFF01) and ident is not None:
                uid = str(ident.get("StudyInstanceUID", ""))
                date = str(ident.get("StudyDate", ""))
                d = dt.date(int(date[:4]), int(date[4:6]), int(date[6:8])) if len(date) >= 8 else None
                out.append(StudyMatch(checked_uid(uid, "Study Instance UID"), d))
    finally:
        assoc.release()
    return out


def store_retrieved(store: Store, ds, on_instance) -> None:
    """Write one retrieved instance (C-GET or WADO-RS) to the store, atomically, under its UIDs,
    and register it with ``on_instance(path, ds)``."""
    path = store.instance_path(ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID)
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    store.write_atomic(path, buf.getvalue())
    on_instance(path, ds)


def get_study(source: DicomNode, calling_ae: str, study_uid: str, store: Store, on_instance, *,
              ssl_context: ssl.SSLContext | None = None) -> int:
    """C-GET a whole study into the store; ``on_instance(path, ds)`` registers each one."""
    ae = AE(ae_title=calling_ae)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = TIMEOUT_S
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelGet)
    storage = RETRIEVED_SOP_CLASSES
    for cx in storage:
        ae.add_requested_context(cx)
    count = 0

    def handle_store(event):
        nonlocal count
        ds = event.dataset
        ds.file_meta = event.file_meta
        store_retrieved(store, ds, on_instance)
        count += 1
        return 0x0000

    q = Dataset()
    q.QueryRetrieveLevel = "STUDY"
    q.StudyInstanceUID = checked_uid(study_uid, "Study Instance UID")
    assoc = _associate(ae, source, ssl_context, " for C-GET",
                       ext_neg=[build_role(cx, scp_role=True) for cx in storage],
                       evt_handlers=[(evt.EVT_C_STORE, handle_store)])
    try:
        for status, _ in assoc.send_c_get(q, StudyRootQueryRetrieveInformationModelGet):
            if status and status.Status not in (0x0000, 0xFF00, 0xFF01, 0xB000):
                raise PacsError(f"C-GET of study {study_uid} from {source}: status 0x{status.Status:04X}")
    finally:
        assoc.release()
    return count


__all__ = ["RETRIEVED_SOP_CLASSES", "PacsError", "find_studies", "get_study", "scu_context", "send_files"]
