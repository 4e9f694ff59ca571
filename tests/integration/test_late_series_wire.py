"""A late series through the wire: dcmtk storescu sends the baseline and a follow-up with one DCE
phase missing to ``followup serve-dicom``, a Celery worker analyses it and storescp (the PACS)
receives SR, SEG and PDF; then the missed phase is sent: the study is analysed again (revision 2)
and the PACS receives a second SR that names the first in its Predecessor Documents Sequence, with
new UIDs throughout. Re-sending the phase (duplicates) makes no third revision."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import pydicom
import pytest

from followup.testing.service_harness import (
    FOLLOWUP,
    free_port,
    pacs_received,
    process,
    redis_server,
    service_env,
    storescp,
    storescu,
    wait_for,
    wait_port,
)

pytestmark = pytest.mark.slow
LATE = "post4"


def _split(pair: Path, into: Path) -> tuple[Path, Path]:
    first, late = into / "first", into / "late"
    for f in sorted((pair / "followup").rglob("*")):
        if f.is_file() and f.suffix != ".json":
            held_back = str(pydicom.dcmread(f, stop_before_pixels=True).get("SeriesDescription", "")).endswith(LATE)
            dest = (late if held_back else first) / f.relative_to(pair / "followup")
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(f, dest)
    return first, late


def _received(folder: Path, study_uid: str) -> dict[str, list[pydicom.Dataset]]:
    """What the PACS holds of the study, by SOP class name."""
    out: dict[str, list[pydicom.Dataset]] = {}
    for _, ds in pacs_received(folder):
        if ds.StudyInstanceUID == study_uid:
            out.setdefault(ds.SOPClassUID.name, []).append(ds)
    return out


def test_late_phase_supersedes_the_first_report_at_the_pacs(tmp_path, synth_pair):
    pair = synth_pair("complete", 3, "per-phase")
    fu = json.loads((pair / "truth.json").read_text())["studies"]["followup"]["study_uid"]
    first, late = _split(pair, tmp_path / "split")
    with redis_server(tmp_path) as redis_url, storescp(tmp_path) as (pacs_port, received):
        env = service_env(tmp_path / "data", redis_url)
        add = subprocess.run([FOLLOWUP, "procedures", "add", str(pair / "procedure.json")], env=env,
                             capture_output=True, text=True)
        assert add.returncode == 0, add.stderr
        port = free_port()
        with process([FOLLOWUP, "serve-dicom", "--ae-title", "FOLLOWUP", "--port", str(port), "--host", "127.0.0.1",
                      "--allow", "PACS", "--destination", f"PACS@127.0.0.1:{pacs_port}",
                      "--quiet-seconds", "2"], tmp_path / "listener.log", env), \
             process([FOLLOWUP, "worker", "--queues", "realtime,batch", "--concurrency", "1"],
                     tmp_path / "worker.log", env):
            wait_port(port)

            def objects(n_sr: int):
                got = _received(received, fu)
                n_objects = sum(map(len, got.values()))
                ready = len(got.get("Comprehensive 3D SR Storage", [])) >= n_sr and n_objects >= 3 * n_sr
                return got if ready else None

            try:
                for folder in (pair / "baseline", first):
                    assert storescu(folder, port).returncode == 0
                wait_for(lambda: objects(1), 300, "revision 1's SR, SEG and PDF at the PACS")
                (sr1,) = _received(received, fu)["Comprehensive 3D SR Storage"]
                assert "PredecessorDocumentsSequence" not in sr1

                assert storescu(late, port).returncode == 0  # the missed phase
                got = wait_for(lambda: objects(2), 300, "revision 2's SR, SEG and PDF at the PACS")
            except TimeoutError:
                for log in ("listener.log", "worker.log"):
                    print(f"--- {log}\n" + (tmp_path / log).read_text()[-4000:])
                raise
            (sr2,) = [ds for ds in got["Comprehensive 3D SR Storage"] if ds.SOPInstanceUID != sr1.SOPInstanceUID]
            (pre,) = sr2.PredecessorDocumentsSequence
            (series,) = pre.ReferencedSeriesSequence
            (sop,) = series.ReferencedSOPSequence
            assert (pre.StudyInstanceUID, series.SeriesInstanceUID, sop.ReferencedSOPInstanceUID) == (
                fu, sr1.SeriesInstanceUID, sr1.SOPInstanceUID)
            assert sr2.SeriesInstanceUID != sr1.SeriesInstanceUID
            every = [ds for kind in got.values() for ds in kind]
            assert len(every) == 6 and len({ds.SOPInstanceUID for ds in every}) == 6  # no object twice

            # The PACS re-sends the phase: duplicates, no revision 3, nothing more at the PACS.
            assert storescu(late, port).returncode == 0
            time.sleep(12)  # the quiet period (2 s) and a hand-over would have happened by now
            status = json.loads(subprocess.run([FOLLOWUP, "status", fu], env=env, capture_output=True,
                                               text=True).stdout)
            assert [(a["revision"], a["status"]) for a in status["analyses"]] == [(1, "complete"), (2, "complete")]
            assert all(d["status"] == "sent" for a in status["analyses"] for d in a["deliveries"])
            assert sum(map(len, _received(received, fu).values())) == 6
