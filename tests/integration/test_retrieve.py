"""A follow-up whose baseline is not in the store: the worker's orchestrator finds it on the PACS
(Orthanc, Debian package) with C-FIND and fetches it with C-GET, then completes the analysis."""

from __future__ import annotations

import json

import pytest

from followup.config import DicomNode, Settings
from followup.procedure import load_procedure
from followup.service.importer import import_folder
from followup.service.orchestrator import new_analysis, process_analysis
from followup.service.registry import Registry
from followup.service.store import Store
from followup.testing.service_harness import free_port, process, require, storescu, wait_port

pytestmark = pytest.mark.slow


def test_missing_baseline_is_retrieved_from_the_pacs(tmp_path, synth_pair):
    orthanc = require("Orthanc", "orthanc")
    pair = synth_pair("complete", 3, "single-series")
    truth = json.loads((pair / "truth.json").read_text())
    dicom_port, http_port = free_port(), free_port()
    config = {"Name": "PACS", "DicomAet": "PACS", "DicomPort": dicom_port, "HttpPort": http_port,
              "StorageDirectory": str(tmp_path / "db"), "IndexDirectory": str(tmp_path / "db"),
              "RemoteAccessAllowed": False, "AuthenticationEnabled": False, "Plugins": [],
              "DicomModalities": {"followup": {"AET": "FOLLOWUP", "Host": "127.0.0.1", "Port": 1,
                                               "AllowFind": True, "AllowGet": True, "AllowStore": True}},
              "DicomCheckModalityHost": False}
    (tmp_path / "orthanc.json").write_text(json.dumps(config))
    settings = Settings(data_dir=tmp_path / "data", retrieve_from=DicomNode("PACS", "127.0.0.1", dicom_port))
    store, reg = Store(settings.data_dir), Registry(settings.database_url)
    with process([orthanc, str(tmp_path / "orthanc.json")], tmp_path / "orthanc.log"):
        wait_port(dicom_port)
        sent = storescu(pair / "baseline", dicom_port, calling="MODALITY", called="PACS")
        assert sent.returncode == 0, sent.stderr
        reg.add_procedure(load_procedure(pair / "procedure.json"))
        import_folder(pair / "followup", store, reg)
        reg.claim_stable_studies(0)
        a = new_analysis(reg, truth["studies"]["followup"]["study_uid"], "realtime")
        out = process_analysis(settings, reg, store, a.id)
    assert out.status == "complete", out.reason
    base_uid = truth["studies"]["baseline"]["study_uid"]
    assert reg.latest_analysis(a.study_uid).baseline_study_uid == base_uid
    baseline = reg.study(base_uid)
    assert baseline.role == "baseline" and baseline.n_instances == len(list((pair / "baseline").glob("*.dcm")))
