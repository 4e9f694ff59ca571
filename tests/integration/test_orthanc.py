"""Orthanc (Debian package) as the PACS: studies sent to Orthanc are auto-routed, once stable, by
its Lua script (deploy/orthanc/autoroute.lua, the one docker-compose uses) to the listener; the
worker sends the SR back to Orthanc."""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from followup.testing.service_harness import (
    FOLLOWUP,
    free_port,
    process,
    redis_server,
    require,
    storescu,
    wait_for,
    wait_port,
)

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


def _orthanc_get(http_port: int, path: str):
    """Orthanc's REST answer, or None while it is busy (its Lua store is synchronous)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{http_port}{path}", timeout=30) as resp:
            return json.loads(resp.read())
    except OSError:
        return None


def test_orthanc_routes_to_the_listener_and_receives_the_sr(tmp_path, synth_pair):
    orthanc = require("Orthanc", "orthanc")
    pair = synth_pair("complete", 3, "single-series")
    fu_uid = json.loads((pair / "truth.json").read_text())["studies"]["followup"]["study_uid"]
    listen_port, dicom_port, http_port = free_port(), free_port(), free_port()
    config = {
        "Name": "ORTHANC", "DicomAet": "ORTHANC", "DicomPort": dicom_port, "HttpPort": http_port,
        "StorageDirectory": str(tmp_path / "orthanc-db"), "IndexDirectory": str(tmp_path / "orthanc-db"),
        "RemoteAccessAllowed": False, "AuthenticationEnabled": False, "StableAge": 2,
        "DicomModalities": {"followup": ["FOLLOWUP", "127.0.0.1", listen_port]},
        "LuaScripts": [str(ROOT / "deploy" / "orthanc" / "autoroute.lua")], "Plugins": [],
        "DicomAlwaysAllowStore": True, "DicomCheckModalityHost": False,
    }
    (tmp_path / "orthanc.json").write_text(json.dumps(config))
    with redis_server(tmp_path) as redis_url:
        env = dict(os.environ, FOLLOWUP_DATA_DIR=str(tmp_path / "data"), FOLLOWUP_REDIS_URL=redis_url)
        env.pop("FOLLOWUP_DB_URL", None)
        add = subprocess.run([FOLLOWUP, "procedures", "add", str(pair / "procedure.json")], env=env,
                             capture_output=True, text=True)
        assert add.returncode == 0, add.stderr
        with process([orthanc, str(tmp_path / "orthanc.json")], tmp_path / "orthanc.log"), \
             process([FOLLOWUP, "serve-dicom", "--ae-title", "FOLLOWUP", "--port", str(listen_port),
                      "--host", "127.0.0.1", "--allow", "ORTHANC", "--destination",
                      f"ORTHANC@127.0.0.1:{dicom_port}", "--quiet-seconds", "2"], tmp_path / "listener.log", env), \
             process([FOLLOWUP, "worker", "--queues", "realtime,batch"], tmp_path / "worker.log", env):
            wait_port(dicom_port)
            wait_port(http_port)
            wait_port(listen_port)
            for study in ("baseline", "followup"):
                sent = storescu(pair / study, dicom_port, calling="MODALITY", called="ORTHANC")
                assert sent.returncode == 0, sent.stderr

            def sr_in_orthanc():
                found = _orthanc_get(http_port, "/series?expand") or []
                return [s for s in found if s["MainDicomTags"].get("Modality") == "SR"]

            try:
                series = wait_for(sr_in_orthanc, 240, "the SR in Orthanc")
            except TimeoutError:
                for log in ("orthanc.log", "listener.log", "worker.log"):
                    print(f"--- {log}\n" + (tmp_path / log).read_text(errors="replace")[-3000:])
                raise
            study = wait_for(lambda: _orthanc_get(http_port, f"/studies/{series[0]['ParentStudy']}"), 60,
                             "Orthanc's study record")
            # Orthanc re-routes the study once our objects made it stable again: they are stored,
            # but no second analysis starts (no loop).
            time.sleep(8)
            status = json.loads(subprocess.run([FOLLOWUP, "status", fu_uid], env=env, capture_output=True,
                                               text=True).stdout)
            assert len(status["analyses"]) == 1, status["analyses"]
    assert study["MainDicomTags"]["StudyInstanceUID"] == fu_uid  # the SR sits in the follow-up study
    assert "routing stable MR study" in (tmp_path / "orthanc.log").read_text(errors="replace")
