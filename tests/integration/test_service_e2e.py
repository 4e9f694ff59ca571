"""End to end with real parts: redis-server, the DICOM listener and a Celery worker as
subprocesses; dcmtk storescu plays the PACS sending, dcmtk storescp the PACS receiving; the API
shows the analysis complete."""

from __future__ import annotations

import json
import os
import subprocess
import urllib.request

import pydicom
import pytest

from followup.testing.service_harness import (
    FOLLOWUP,
    free_port,
    pacs_received,
    process,
    redis_server,
    storescp,
    storescu,
    wait_for,
    wait_port,
)

pytestmark = pytest.mark.slow


def _get(port: int, path: str, token: str) -> dict:
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


def test_pacs_to_listener_to_worker_to_pacs(tmp_path, synth_pair):
    pair = synth_pair("residual", 1, "per-phase")
    truth = json.loads((pair / "truth.json").read_text())
    fu_uid = truth["studies"]["followup"]["study_uid"]
    token = "e2e-token-0123456789abcdef0123456789"
    with redis_server(tmp_path) as redis_url, storescp(tmp_path) as (pacs_port, received):
        env = dict(os.environ, FOLLOWUP_DATA_DIR=str(tmp_path / "data"), FOLLOWUP_REDIS_URL=redis_url,
                   FOLLOWUP_API_TOKEN=token)
        env.pop("FOLLOWUP_DB_URL", None)
        env.pop("FOLLOWUP_DESTINATION", None)
        add = subprocess.run([FOLLOWUP, "procedures", "add", str(pair / "procedure.json")], env=env,
                             capture_output=True, text=True)
        assert add.returncode == 0, add.stderr
        port, api_port = free_port(), free_port()
        with process([FOLLOWUP, "serve-dicom", "--ae-title", "FOLLOWUP", "--port", str(port), "--host", "127.0.0.1",
                      "--allow", "PACS", "--destination", f"PACS@127.0.0.1:{pacs_port}",
                      "--quiet-seconds", "2"], tmp_path / "listener.log", env), \
             process([FOLLOWUP, "worker", "--queues", "realtime,batch", "--concurrency", "1"],
                     tmp_path / "worker.log", env), \
             process([FOLLOWUP, "serve-api", "--port", str(api_port)], tmp_path / "api.log", env):
            wait_port(port)
            wait_port(api_port)
            sent = storescu(pair / "baseline", port)
            assert sent.returncode == 0, sent.stderr
            sent = storescu(pair / "followup", port)
            assert sent.returncode == 0, sent.stderr

            def sr_arrived():
                for f, ds in pacs_received(received):
                    if ds.SOPClassUID == pydicom.uid.Comprehensive3DSRStorage and ds.StudyInstanceUID == fu_uid:
                        return f
                return None

            try:
                sr_file = wait_for(sr_arrived, 240, "the SR at the PACS")
            except TimeoutError:
                for log in ("listener.log", "worker.log"):
                    print(f"--- {log}\n" + (tmp_path / log).read_text()[-4000:])
                raise
            detail = wait_for(lambda: (d := _get(api_port, f"/studies/{fu_uid}", token))
                              and d["state"] == "complete" and d, 60, "the API to show the analysis complete")
            classes = wait_for(lambda: sorted({ds.SOPClassUID.name for _, ds in got})
                               if len(got := pacs_received(received)) >= 3 else None, 60, "SR, SEG and PDF at PACS")
            # Batch reanalysis from the CLI: progress until done, a new revision, the first kept.
            re = subprocess.run([FOLLOWUP, "reanalyze", "--all", "--reason", "algorithm change"], env=env,
                                capture_output=True, text=True, timeout=300)
            assert re.returncode == 0, re.stderr
            assert "batch 1: 1 studies enqueued" in re.stdout and '"complete": 1' in re.stdout
            status = json.loads(subprocess.run([FOLLOWUP, "status", fu_uid], env=env, capture_output=True,
                                               text=True).stdout)
            assert [(x["revision"], x["queue"], x["status"]) for x in status["analyses"]] == [
                (1, "realtime", "complete"), (2, "batch", "complete")]
            assert all(d["status"] == "sent" for x in status["analyses"] for d in x["deliveries"])
            listed = subprocess.run([FOLLOWUP, "procedures", "list", "--json"], env=env, capture_output=True, text=True)
            assert len(json.loads(listed.stdout)) == 1 and "SYN" not in listed.stdout
    # No patient identifiers in any service log (name, ID, birth date of the synthetic patient).
    src = pydicom.dcmread(next((pair / "followup").glob("*.dcm")), stop_before_pixels=True)
    for log in ("listener.log", "worker.log", "api.log"):
        text = (tmp_path / log).read_text(errors="replace")
        for phi in (str(src.PatientName), str(src.PatientName).split("^")[0], src.PatientID, src.PatientBirthDate):
            assert phi not in text, f"{phi!r} found in {log}"
    assert "Comprehensive 3D SR Storage" in classes and "Segmentation Storage" in classes
    assert "Encapsulated PDF Storage" in classes
    sr = pydicom.dcmread(sr_file)
    assert sr.StudyInstanceUID == fu_uid
    assert detail["state"] == "complete"
    # nothing was sent for the baseline study
    base_uid = truth["studies"]["baseline"]["study_uid"]
    assert all(pydicom.dcmread(f, stop_before_pixels=True).StudyInstanceUID != base_uid
               for f in received.rglob("*") if f.is_file())
