"""One analysed patient for the web page's tests and screenshots, built through the service's real
paths: a synthetic pair (``followup synth``) imported through the listener's handler
(``followup.service.importer``), queued as the import does, analysed by the orchestrator
(``process_analysis``, the worker's task, the real analysis), then a reanalysis batch after the
procedure record was corrected (an in-situ component recorded), which changes the recommendation
of every follow-up of the patient: results for the reanalysis review. Optionally a later follow-up
(a copy of the follow-up with new UIDs, dated later), so that the patient has probabilities at two
time points. And a uvicorn server on a free port, in a thread, serving the real application.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pydicom

from followup.config import Settings
from followup.procedure import load_procedure, parse_procedure
from followup.service.batch import start_reanalysis
from followup.service.importer import import_folder, queue_imported
from followup.service.orchestrator import process_analysis
from followup.service.registry import Registry
from followup.service.store import Store
from followup.service.work_queue import RecordingQueue
from followup.testing.pairs import study_uid
from followup.testing.service_harness import free_port, wait_port

_NAMESPACE = uuid.UUID("6f1c2a4e-8d0b-4c4e-9a51-15e0f0a0c0de")
DATE_TAGS = ("StudyDate", "SeriesDate", "AcquisitionDate", "ContentDate")


@dataclass
class AnalysedPatient:
    settings: Settings
    registry: Registry
    store: Store
    queue: RecordingQueue
    patient_id: str
    patient_name: str
    accession: str
    baseline_uid: str
    followup_uid: str
    first_analysis_id: int
    batch_id: int
    reanalysis_id: int
    later_followup_uid: str | None = None


def _new_uid(old: str, salt: str) -> str:
    return f"2.25.{uuid.uuid5(_NAMESPACE, f'{salt}|{old}').int}"


def later_copy(src: Path, dst: Path, days: int, accession: str) -> Path:
    """The study in ``src`` as a new study ``days`` later (new Study, Series and SOP Instance UIDs)."""
    dst.mkdir(parents=True, exist_ok=True)
    for f in sorted(src.glob("*.dcm")):
        ds = pydicom.dcmread(f)
        salt = f"later-{days}"
        ds.StudyInstanceUID = _new_uid(str(ds.StudyInstanceUID), salt)
        ds.SeriesInstanceUID = _new_uid(str(ds.SeriesInstanceUID), salt)
        ds.SOPInstanceUID = _new_uid(str(ds.SOPInstanceUID), salt)
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        for tag in DATE_TAGS:
            if ds.get(tag):
                day = dt.datetime.strptime(str(ds.get(tag)), "%Y%m%d").date() + dt.timedelta(days=days)
                setattr(ds, tag, day.strftime("%Y%m%d"))
        ds.AccessionNumber = accession
        ds.save_as(dst / f"{ds.SOPInstanceUID}.dcm", enforce_file_format=True)
    return dst


def _analyse_queued(settings: Settings, registry: Registry, store: Store, queue: RecordingQueue,
                    done: set[int]) -> None:
    """Run every queued analysis not run yet, oldest study first (a baseline before its follow-ups)."""
    todo = [aid for aid, _q in queue.analyses if aid not in done]

    def study_date(aid: int) -> dt.date:
        a = registry.analysis(aid)
        st = registry.study(a.study_uid) if a is not None else None
        return (st.study_date if st is not None else None) or dt.date.max

    for aid in sorted(todo, key=study_date):
        process_analysis(settings, registry, store, aid)
        done.add(aid)


def build_analysed_patient(data_dir: Path, pair: Path, token: str, *, later_followup_days: int | None = None,
                           scratch: Path | None = None) -> AnalysedPatient:
    data_dir.mkdir(parents=True, exist_ok=True)
    settings = Settings(data_dir=data_dir, api_token=token, sync_storage=False)
    registry, store = Registry(settings.database_url, sync=False), Store(data_dir, sync=False)
    queue, done = RecordingQueue(registry=registry), set[int]()
    record = load_procedure(pair / "procedure.json")
    registry.add_procedure(record)
    folders = [pair / "baseline", pair / "followup"]
    later_uid = None
    if later_followup_days is not None:
        later = later_copy(pair / "followup", (scratch or data_dir.parent) / "later-followup", later_followup_days,
                           "LATER0001")
        folders.append(later)
        later_uid = str(pydicom.dcmread(next(later.glob("*.dcm")), stop_before_pixels=True).StudyInstanceUID)
    new_images: set[str] = set()
    for folder in folders:
        new_images |= import_folder(folder, store, registry).new_images
    queue_imported(registry, queue, new_images, reason="import of earlier studies")
    _analyse_queued(settings, registry, store, queue, done)
    followup = study_uid(pair, "followup")
    first = registry.latest_analysis(followup)
    assert first is not None and first.status == "complete", (first.status if first else None)
    corrected = record.model_dump(mode="json")
    corrected["lesion"] = {**corrected["lesion"], "dcis_component_pct": 30, "insitu_grade": "low"}
    registry.add_procedure(parse_procedure(corrected))
    batch = start_reanalysis(registry, queue, study_uids=[followup] + ([later_uid] if later_uid else []),
                             reason="procedure record corrected: in-situ component")
    _analyse_queued(settings, registry, store, queue, done)
    again = registry.latest_analysis(followup)
    assert again is not None and again.batch_id == batch.id and again.status == "complete", again
    st = registry.study(followup)
    assert st is not None
    ds = pydicom.dcmread(next((pair / "followup").glob("*.dcm")), stop_before_pixels=True)
    return AnalysedPatient(settings, registry, store, queue, st.patient_id, str(ds.PatientName),
                           st.accession_number, study_uid(pair, "baseline"), followup, first.id, batch.id, again.id,
                           later_uid)


@contextmanager
def api_server(settings: Settings, registry: Registry, queue: RecordingQueue | None = None) -> Iterator[str]:
    """The real application under uvicorn on 127.0.0.1 and a free port, in a thread; yields its URL."""
    import uvicorn

    from followup.api import create_app

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(settings, registry, queue), host="127.0.0.1", port=port,
                                           log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, name="followup-test-api", daemon=True)
    thread.start()
    try:
        wait_port(port)
        yield f"http://127.0.0.1:{port}/"
    finally:
        server.should_exit = True
        deadline = time.monotonic() + 10
        while thread.is_alive() and time.monotonic() < deadline:
            thread.join(0.2)


__all__ = ["AnalysedPatient", "api_server", "build_analysed_patient", "later_copy"]
