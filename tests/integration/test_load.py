"""Load on loopback with real processes: redis-server, the listener (`followup serve-dicom`), two
Celery workers competing for the tasks, eight dcmtk storescu associations at a time sending 20
patients' baseline and follow-up studies (over 10,000 instances), dcmtk storescp as the PACS that
receives the results (unique file names, so an object sent twice shows as two files).

Proves: every instance stored exactly once and byte for byte (registry rows = SOP Instance UIDs
sent = files in the store, nothing left in the spool, nothing quarantined, per-study counts
right); every study analysed exactly once (one analysis row per study, one SR + SEG + PDF per
follow-up at the PACS, nothing for the baselines, no task left in the broker)."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import pydicom
import pytest
import redis
from pynetdicom import AE
from pynetdicom.sop_class import Verification
from sqlalchemy import func, select

from followup.config import Settings
from followup.service.listener import serve_dicom
from followup.service.registry import Analysis, Delivery, Instance, Registry, Study
from followup.synth.cohort import CohortCase, make_cohort, sending_lanes
from followup.testing.service_harness import (
    FOLLOWUP,
    free_port,
    pacs_received,
    process,
    redis_server,
    require,
    service_env,
    wait_for,
    wait_port,
)

pytestmark = pytest.mark.slow

PATIENTS = 20
ASSOCIATIONS = 8
QUIET_S = 4.0  # generous: under CPU load an instance can take a while, a study must not split
RESULT_CLASSES = {pydicom.uid.Comprehensive3DSRStorage: "sr", pydicom.uid.SegmentationStorage: "seg",
                  pydicom.uid.EncapsulatedPDFStorage: "pdf"}


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> list[CohortCase]:
    return make_cohort(tmp_path_factory.mktemp("load-cohort"), PATIENTS)


@contextmanager
def pacs(tmp: Path):
    """storescp with unique file names: each received object is one file, duplicates included."""
    exe = require("storescp", "dcmtk")
    port, out = free_port(), tmp / "pacs-received"
    out.mkdir()
    with process([exe, "--aetitle", "PACS", "--output-directory", str(out), "+uf", "+xa", str(port)],
                 tmp / "storescp.log", dict(os.environ, TCP_NODELAY="1")):
        wait_port(port)
        yield port, out


def send_lane(folders: list[Path], port: int) -> list[subprocess.CompletedProcess]:
    """One study per association, one after the other (a PACS forwarding queue)."""
    exe = require("storescu", "dcmtk")
    env = dict(os.environ, TCP_NODELAY="1")
    return [subprocess.run([exe, "-aet", "PACS", "-aec", "FOLLOWUP", "+sd", "+r", "-xs", "127.0.0.1", str(port),
                            str(folder)], check=False, capture_output=True, text=True, env=env, timeout=600)
            for folder in folders]


def source_files(cases: list[CohortCase]) -> dict[str, Path]:
    """SOP Instance UID -> the file sent (files are named by their SOP Instance UID)."""
    files = {}
    for c in cases:
        for role in ("baseline", "followup"):
            for f in (c.path / role).glob("*.dcm"):
                assert f.stem not in files, "the cohort has a SOP Instance UID twice"
                files[f.stem] = f
    return files


def dataset_bytes(path: Path) -> bytes:
    """The data set as sent, without the file meta (each writer puts its own there)."""
    data = path.read_bytes()
    assert data[128:132] == b"DICM" and data[132:136] == b"\x02\x00\x00\x00", path
    return data[144 + int.from_bytes(data[140:144], "little"):]


def received_results(folder: Path) -> list[tuple[str, str, str]]:
    """(study UID, kind, SOP Instance UID) of every object the PACS received."""
    out = []
    for _, ds in pacs_received(folder):
        out.append((str(ds.StudyInstanceUID), RESULT_CLASSES.get(ds.SOPClassUID, "other"),
                    str(ds.SOPInstanceUID)))
    return out


def all_delivered(reg: Registry, followups: set[str]) -> bool:
    with reg.session() as s:
        done = s.scalar(select(func.count()).select_from(Study).where(
            Study.study_uid.in_(followups), Study.state.in_(("complete", "deferred", "failed"))))
        pending = s.scalar(select(func.count()).select_from(Delivery).where(Delivery.status != "sent"))
        sent = s.scalar(select(func.count()).select_from(Delivery).where(Delivery.status == "sent"))
    return done == len(followups) and pending == 0 and sent >= 3 * len(followups)


def test_eight_associations_twenty_patients_each_instance_once_each_study_once(tmp_path, cohort):
    sent_files = source_files(cohort)
    assert len(sent_files) >= 2000
    followups = {c.followup_study_uid for c in cohort}
    baselines = {c.baseline_study_uid for c in cohort}
    data = tmp_path / "data"
    with redis_server(tmp_path) as redis_url, pacs(tmp_path) as (pacs_port, received):
        env = service_env(data, redis_url)
        # Two workers on a small machine: one thread each, or their torch thread pools fight.
        worker_env = dict(env, OMP_NUM_THREADS="1")
        add = subprocess.run([FOLLOWUP, "procedures", "add", *[str(c.path / "procedure.json") for c in cohort]],
                             env=env, check=False, capture_output=True, text=True)
        assert add.returncode == 0, add.stderr
        port = free_port()
        with process([FOLLOWUP, "serve-dicom", "--ae-title", "FOLLOWUP", "--port", str(port), "--host", "127.0.0.1",
                      "--allow", "PACS", "--destination", f"PACS@127.0.0.1:{pacs_port}",
                      "--quiet-seconds", str(QUIET_S)], tmp_path / "listener.log", env) as listener, \
             process([FOLLOWUP, "worker", "--queues", "realtime,batch", "--hostname", "load1@%h"],
                     tmp_path / "worker1.log", worker_env), \
             process([FOLLOWUP, "worker", "--queues", "realtime,batch", "--hostname", "load2@%h"],
                     tmp_path / "worker2.log", worker_env):
            wait_port(port)
            t0 = time.monotonic()
            lanes = sending_lanes(cohort, ASSOCIATIONS)
            assert len(lanes) == ASSOCIATIONS
            with ThreadPoolExecutor(ASSOCIATIONS) as pool:
                runs = [r for lane in pool.map(lambda lane: send_lane(lane, port), lanes) for r in lane]
            receive_s = time.monotonic() - t0
            for r in runs:
                assert r.returncode == 0 and "E:" not in r.stderr, r.stderr[-2000:]
            reg = Registry(f"sqlite:///{(data / 'followup.db').resolve()}")
            try:
                wait_for(lambda: all_delivered(reg, followups), 900, "every follow-up analysed and delivered",
                         interval=2)
            except TimeoutError:
                for log in ("listener.log", "worker1.log", "worker2.log"):
                    print(f"--- {log}\n" + (tmp_path / log).read_text(errors="replace")[-3000:])
                raise
            done_s = time.monotonic() - t0
            # Let anything that would run twice (a late claim, a redelivered task) have its chance.
            time.sleep(QUIET_S + 6)
            broker = redis.Redis.from_url(redis_url)
            assert broker.llen("realtime") == 0 and broker.llen("batch") == 0
            assert broker.hlen("unacked") == 0, "a task is still held by a worker"
            assert listener.poll() is None, "the listener died under load"
        print(f"\nload: {len(sent_files)} instances in {receive_s:.1f} s "
              f"({len(sent_files) / receive_s:.0f}/s); all {len(followups)} follow-ups delivered after "
              f"{done_s:.1f} s")

    # Every instance stored exactly once, complete, where the registry says.
    with reg.session() as s:
        rows = {i.sop_uid: (i.path, i.size, i.study_uid) for i in s.scalars(select(Instance))}
        studies = {st.study_uid: st for st in s.scalars(select(Study))}
        analyses = list(s.scalars(select(Analysis)))
        deliveries = list(s.scalars(select(Delivery)))
    assert set(rows) == set(sent_files), "registry rows differ from the SOP Instance UIDs sent"
    stored = {p.resolve() for p in (data / "store").rglob("*") if p.is_file()}
    assert stored == {Path(p).resolve() for p, _, _ in rows.values()}, "store files differ from registry rows"
    for sop, (path, size, _) in rows.items():
        assert size == Path(path).stat().st_size, f"{sop}: registry size differs from the file"
        assert dataset_bytes(Path(path)) == dataset_bytes(sent_files[sop]), f"{sop} not stored as sent"
    assert list((data / "spool").iterdir()) == [], "partial files left in the spool"
    assert list((data / "quarantine").iterdir()) == [], "valid instances were quarantined"
    per_study = Counter(study for _, _, study in rows.values())
    for c in cohort:
        assert per_study[c.baseline_study_uid] == c.baseline_instances
        assert per_study[c.followup_study_uid] == c.followup_instances
        assert studies[c.baseline_study_uid].n_instances == c.baseline_instances
        assert studies[c.followup_study_uid].n_instances == c.followup_instances
    assert set(studies) == followups | baselines

    # Every study analysed exactly once: baselines classified, follow-ups analysed against them.
    assert Counter(a.study_uid for a in analyses) == Counter({uid: 1 for uid in followups | baselines})
    by_study = {a.study_uid: a for a in analyses}
    for c in cohort:
        fu, base = by_study[c.followup_study_uid], by_study[c.baseline_study_uid]
        assert (fu.status, fu.revision, fu.baseline_study_uid) == ("complete", 1, c.baseline_study_uid), fu.reason
        assert studies[c.followup_study_uid].state == "complete"
        assert base.status == "complete" and studies[c.baseline_study_uid].state == "baseline"
    assert Counter((d.analysis_id, d.kind) for d in deliveries) == Counter(
        {(by_study[uid].id, kind): 1 for uid in followups for kind in ("sr", "seg", "pdf")})
    assert all(d.status == "sent" and d.attempts == 1 for d in deliveries)

    # The PACS received one SR, one SEG and one PDF per follow-up, once each; nothing else.
    got = received_results(received)
    assert Counter(sop for _, _, sop in got).most_common(1)[0][1] == 1, "an object reached the PACS twice"
    assert Counter((study, kind) for study, kind, _ in got) == Counter(
        {(uid, kind): 1 for uid in followups for kind in ("sr", "seg", "pdf")})

    # Nothing went wrong quietly: no database lock, no retried task, no refused association.
    logs = {n: (tmp_path / n).read_text(errors="replace") for n in ("listener.log", "worker1.log", "worker2.log")}
    for name, text in logs.items():
        for bad in ("database is locked", "OperationalError", "out of resources", "retrying", "Retry in",
                    "Traceback", "rejected"):
            assert bad not in text, f"{bad!r} in {name}"
    # Both workers took part (the competing consumers are what exactly-once is about).
    for name in ("worker1.log", "worker2.log"):
        assert "'status': 'complete'}" in logs[name], f"{name}: this worker analysed no follow-up"


def test_association_limit_counts_associations_in_use_only(tmp_path):
    """What the load test found: a TCP connection that never asks for an association (a port probe,
    a health check) and an association already released must not take a slot, or a PACS sending
    on as many lanes as the limit allows is refused "local limit exceeded". The limit still holds."""
    port = free_port()
    server = serve_dicom(Settings(data_dir=tmp_path / "data"), ae_title="FOLLOWUP", port=port, allow=["PACS"],
                         quiet_seconds=3600, on_stable=lambda uid: None, block=False, max_associations=2)
    scu = AE(ae_title="PACS")
    scu.add_requested_context(Verification)
    held = []
    try:
        probe = socket.create_connection(("127.0.0.1", port))  # says nothing: pynetdicom waits 30 s for it
        time.sleep(0.3)
        held = [scu.associate("127.0.0.1", port, ae_title="FOLLOWUP") for _ in range(2)]
        assert all(a.is_established for a in held), "a silent TCP connection took an association slot"
        third = scu.associate("127.0.0.1", port, ae_title="FOLLOWUP")
        assert third.is_rejected, "the limit of 2 associations did not hold"
        for _ in range(5):  # re-associate at once after each release, as storescu per study does
            held.pop(0).release()
            held.append(scu.associate("127.0.0.1", port, ae_title="FOLLOWUP"))
            assert held[-1].is_established, "a released association still took a slot"
        probe.close()
    finally:
        for a in held:
            if a.is_established:
                a.release()
        server.shutdown()
