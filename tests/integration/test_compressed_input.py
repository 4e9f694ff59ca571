"""Compressed DICOM as a PACS sends it (issue 12): dcmtk's storescu sends JPEG Lossless SV1 and
JPEG 2000 to the listener, which accepts and stores them as received; a DCE study pair re-encoded
(follow-up JPEG Lossless SV1 by dcmtk's dcmcjpeg, baseline JPEG 2000 lossless by pydicom's
OpenJPEG encoder) and received that way is analysed by the job the worker runs with the same
result as its uncompressed copy."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom import uid as U

from followup.config import Settings
from followup.dicom import load_dce_study
from followup.dicom.header_reader import read_header
from followup.dicom.stack import read_frames
from followup.job import run_job
from followup.procedure import load_procedure
from followup.service.listener import serve_dicom
from followup.testing.service_harness import free_port

STORESCU = Path("/usr/bin/storescu")  # dcmtk's (.venv/bin/storescu is pynetdicom's)
DCMCJPEG = Path("/usr/bin/dcmcjpeg")
pytestmark = pytest.mark.skipif(not (STORESCU.exists() and DCMCJPEG.exists()),
                                reason="dcmtk (storescu, dcmcjpeg) not installed")


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file())


def _jpeg_lossless_sv1(src: Path, dst: Path) -> None:
    """Every file of ``src`` re-encoded by dcmtk as JPEG Lossless SV1 (.70) under ``dst``."""
    for f in _files(src):
        out = dst / f.relative_to(src)
        out.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([str(DCMCJPEG), "+e1", str(f), str(out)], check=True, capture_output=True)


def _jpeg2000_lossless(src: Path, dst: Path) -> None:
    """Every file of ``src`` re-encoded by pydicom (OpenJPEG) as JPEG 2000 lossless (.90)."""
    for f in _files(src):
        out = dst / f.relative_to(src)
        out.parent.mkdir(parents=True, exist_ok=True)
        ds = pydicom.dcmread(f)
        ds.compress(U.JPEG2000Lossless)
        ds.save_as(out, enforce_file_format=True)


@pytest.fixture(scope="module")
def pairs(tmp_path_factory) -> tuple[Path, Path]:
    """(uncompressed pair, compressed copy) of one small synthetic residual-tumour case."""
    from followup.synth import generate_pair

    root = tmp_path_factory.mktemp("compressed")
    plain, packed = root / "plain", root / "packed"
    generate_pair(plain, "residual", 1, "per-phase", "small")
    _jpeg_lossless_sv1(plain / "followup", packed / "followup")
    _jpeg2000_lossless(plain / "baseline", packed / "baseline")
    shutil.copy(plain / "procedure.json", packed / "procedure.json")
    return plain, packed


@pytest.fixture
def listener(tmp_path):
    port = free_port()
    server = serve_dicom(Settings(data_dir=tmp_path / "data", ae_title="FOLLOWUP"), ae_title="FOLLOWUP",
                         port=port, allow=["PACS"], quiet_seconds=3600.0, on_stable=lambda uid: None,
                         block=False, poll_seconds=0.1)
    server.port = port
    yield server
    server.shutdown()


def _storescu(port: int, folder: Path, propose: str) -> None:
    r = subprocess.run([str(STORESCU), "-aet", "PACS", "-aec", "FOLLOWUP", "+sd", "+r", propose,
                        "127.0.0.1", str(port), str(folder)],
                       env={**os.environ, "TCP_NODELAY": "1"}, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]


def _syntax(path: Path) -> str:
    return str(pydicom.dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID)


def _study_dir(server, folder: Path) -> Path:
    uid = pydicom.dcmread(_files(folder)[0], stop_before_pixels=True).StudyInstanceUID
    return server.store.study_dir(uid)


def test_real_compressed_mr_files_sent_by_storescu_are_stored_as_received(listener, tmp_path):
    """A real JPEG 2000 MR (pydicom-data's MR2_J2KR, 1024 x 1024 12-bit) and MR_small re-encoded
    to JPEG Lossless SV1 by dcmtk: accepted in those syntaxes, stored byte for byte."""
    from pydicom.data import get_testdata_file

    j2k = tmp_path / "j2k"
    j2k.mkdir()
    shutil.copy(get_testdata_file("MR2_J2KR.dcm"), j2k / "mr2.dcm")
    jll = tmp_path / "jll"
    jll.mkdir()
    subprocess.run([str(DCMCJPEG), "+e1", get_testdata_file("MR_small.dcm"), str(jll / "mr.dcm")],
                   check=True, capture_output=True)
    _storescu(listener.port, j2k, "-xv")
    _storescu(listener.port, jll, "-xs")
    stored = sorted(listener.store.instances.rglob("*.dcm"))
    assert sorted(_syntax(p) for p in stored) == sorted([U.JPEG2000Lossless, U.JPEGLosslessSV1])
    for p in stored:
        sent = j2k / "mr2.dcm" if _syntax(p) == U.JPEG2000Lossless else jll / "mr.dcm"
        assert pydicom.dcmread(p).PixelData == pydicom.dcmread(sent).PixelData
        ref = pydicom.dcmread(get_testdata_file("MR2_J2KR.dcm" if sent.parent == j2k else "MR_small.dcm"))
        np.testing.assert_array_equal(read_frames(read_header(p))[0], ref.pixel_array)  # type: ignore[arg-type]


@pytest.mark.slow
def test_compressed_study_analysed_like_its_uncompressed_copy(listener, pairs, tmp_path):
    plain, packed = pairs
    _storescu(listener.port, packed / "followup", "-xs")
    _storescu(listener.port, packed / "baseline", "-xv")
    fu_dir, bl_dir = _study_dir(listener, packed / "followup"), _study_dir(listener, packed / "baseline")
    assert {_syntax(p) for p in _files(fu_dir)} == {U.JPEGLosslessSV1}
    assert {_syntax(p) for p in _files(bl_dir)} == {U.JPEG2000Lossless}
    assert len(_files(fu_dir)) == len(_files(plain / "followup"))
    # the decoded volumes are identical, phase for phase
    a, b = load_dce_study(plain / "followup"), load_dce_study(fu_dir)
    for pa, pb in zip(a.phases, b.phases, strict=True):
        np.testing.assert_array_equal(pa.volume.data, pb.volume.data)
    record = load_procedure(plain / "procedure.json")
    want = run_job(plain / "followup", plain / "baseline", record, tmp_path / "out-plain").report
    got = run_job(fu_dir, bl_dir, record, tmp_path / "out-packed").report
    assert want.status == got.status and want.findings is not None
    assert got.residual_probability == want.residual_probability
    assert got.probability_interval == want.probability_interval
    assert got.findings == want.findings  # zone (volume, axes, margins), rim, every focus
    assert got.findings.ablation_zone.volume_ml == want.findings.ablation_zone.volume_ml
    assert len(got.findings.suspicious_foci) == len(want.findings.suspicious_foci)


@pytest.mark.slow
def test_compressed_study_through_listener_and_worker(pairs, tmp_path):
    """storescu -> `followup serve-dicom` -> Celery worker -> PACS, the pair compressed (JPEG
    Lossless SV1 follow-up, JPEG 2000 baseline): the SR reaches the PACS and the worker's report
    has the probability of the same study analysed uncompressed."""
    import json

    from followup.testing.service_harness import (
        FOLLOWUP,
        pacs_received,
    process,
        redis_server,
        storescp,
        wait_for,
        wait_port,
    )

    plain, packed = pairs
    fu_uid = pydicom.dcmread(_files(packed / "followup")[0], stop_before_pixels=True).StudyInstanceUID
    with redis_server(tmp_path) as redis_url, storescp(tmp_path) as (pacs_port, received):
        env = dict(os.environ, FOLLOWUP_DATA_DIR=str(tmp_path / "data"), FOLLOWUP_REDIS_URL=redis_url,
                   FOLLOWUP_API_TOKEN="compressed-token-0123456789abcdef")
        env.pop("FOLLOWUP_DB_URL", None)
        add = subprocess.run([FOLLOWUP, "procedures", "add", str(packed / "procedure.json")], env=env,
                             capture_output=True, text=True)
        assert add.returncode == 0, add.stderr
        port = free_port()
        with process([FOLLOWUP, "serve-dicom", "--ae-title", "FOLLOWUP", "--port", str(port), "--host",
                      "127.0.0.1", "--allow", "PACS", "--destination", f"PACS@127.0.0.1:{pacs_port}",
                      "--quiet-seconds", "2"], tmp_path / "listener.log", env), \
             process([FOLLOWUP, "worker", "--queues", "realtime,batch", "--concurrency", "1"],
                     tmp_path / "worker.log", env):
            wait_port(port)
            _storescu(port, packed / "baseline", "-xv")
            _storescu(port, packed / "followup", "-xs")

            def sr_arrived():
                for f, ds in pacs_received(received):
                    if ds.SOPClassUID == U.Comprehensive3DSRStorage and ds.StudyInstanceUID == fu_uid:
                        return f
                return None

            try:
                wait_for(sr_arrived, 240, "the SR at the PACS")
            except TimeoutError:
                for log in ("listener.log", "worker.log"):
                    print(f"--- {log}\n" + (tmp_path / log).read_text()[-4000:])
                raise
    stored = tmp_path / "data" / "store" / fu_uid
    assert {_syntax(p) for p in _files(stored)} == {U.JPEGLosslessSV1}
    reports = [json.loads(p.read_text()) for p in (tmp_path / "data").rglob("report.json")]
    assert len(reports) == 1
    want = run_job(plain / "followup", plain / "baseline", load_procedure(plain / "procedure.json"),
                   tmp_path / "out-plain").report
    assert reports[0]["status"] == want.status
    assert reports[0]["residual_probability"] == pytest.approx(want.residual_probability, abs=1e-12)
    zone = reports[0]["findings"]["ablation_zone"]
    assert zone["volume_ml"] == pytest.approx(want.findings.ablation_zone.volume_ml, abs=1e-9)  # type: ignore[union-attr]
    assert len(reports[0]["findings"]["suspicious_foci"]) == len(want.findings.suspicious_foci)  # type: ignore[union-attr]
