"""A follow-up whose baseline is not in the store: the worker's orchestrator finds it on the PACS
(Orthanc, Debian package) with C-FIND and fetches it with C-GET, then completes the analysis. The
same for a patient's earlier follow-ups (issue 14): fetched for comparison, not analysed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from followup.config import Settings
from followup.procedure import load_procedure
from followup.remote_nodes import DicomNode
from followup.service.importer import import_folder
from followup.service.orchestrator import new_analysis, process_analysis
from followup.service.priors import RETRIEVED_PRIOR
from followup.service.registry import Registry
from followup.service.store import Store
from followup.states import StudyRole, StudyState
from followup.synth.surveillance import generate_surveillance
from followup.testing.service_harness import free_port, process, require, storescu, wait_port

pytestmark = pytest.mark.slow


def _orthanc_config(tmp_path):
    """An Orthanc PACS that lets our AE (FOLLOWUP) find and get; its config file and DICOM port."""
    dicom_port, http_port = free_port(), free_port()
    config = {"Name": "PACS", "DicomAet": "PACS", "DicomPort": dicom_port, "HttpPort": http_port,
              "StorageDirectory": str(tmp_path / "db"), "IndexDirectory": str(tmp_path / "db"),
              "RemoteAccessAllowed": False, "AuthenticationEnabled": False, "Plugins": [],
              "DicomModalities": {"followup": {"AET": "FOLLOWUP", "Host": "127.0.0.1", "Port": 1,
                                               "AllowFind": True, "AllowGet": True, "AllowStore": True}},
              "DicomCheckModalityHost": False}
    (tmp_path / "orthanc.json").write_text(json.dumps(config))
    return tmp_path / "orthanc.json", dicom_port


def test_missing_baseline_is_retrieved_from_the_pacs(tmp_path, synth_pair):
    orthanc = require("Orthanc", "orthanc")
    pair = synth_pair("complete", 3, "single-series")
    truth = json.loads((pair / "truth.json").read_text())
    config_file, dicom_port = _orthanc_config(tmp_path)
    settings = Settings(data_dir=tmp_path / "data", retrieve_from=DicomNode("PACS", "127.0.0.1", dicom_port))
    store, reg = Store(settings.data_dir), Registry(settings.database_url)
    with process([orthanc, str(config_file)], tmp_path / "orthanc.log"):
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


def test_earlier_followups_are_retrieved_for_comparison(tmp_path):
    """The 6-month follow-up arrives alone; the baseline and the 1-month follow-up are only on the
    PACS. The worker fetches both: the report compares with the earlier follow-up, which is kept as
    a retrieved prior (deferred, not analysed on its own, nothing sent)."""
    orthanc = require("Orthanc", "orthanc")
    series = tmp_path / "series"
    truth = generate_surveillance(series, 4)  # baseline + follow-ups at 1, 6 and 12 months
    fu1, fu2 = (tp["study_uid"] for tp in truth["time_points"][:2])
    config_file, dicom_port = _orthanc_config(tmp_path)
    settings = Settings(data_dir=tmp_path / "data", retrieve_from=DicomNode("PACS", "127.0.0.1", dicom_port))
    store, reg = Store(settings.data_dir), Registry(settings.database_url)
    with process([orthanc, str(config_file)], tmp_path / "orthanc.log"):
        wait_port(dicom_port)
        for folder in ("baseline", "followup-1"):
            sent = storescu(series / folder, dicom_port, calling="MODALITY", called="PACS")
            assert sent.returncode == 0, sent.stderr
        reg.add_procedure(load_procedure(series / "procedure.json"))
        import_folder(series / "followup-2", store, reg)
        assert reg.study(fu1) is None
        reg.claim_stable_studies(0)
        a = new_analysis(reg, fu2, "realtime")
        out = process_analysis(settings, reg, store, a.id)
    assert out.status == "complete", out.reason
    prior = reg.study(fu1)
    assert prior.n_instances == len(list((series / "followup-1").glob("*.dcm")))
    assert prior.state == StudyState.DEFERRED and prior.role == StudyRole.FOLLOWUP
    assert prior.reason == RETRIEVED_PRIOR
    assert reg.latest_analysis(fu1) is None  # not analysed on its own
    report = json.loads((Path(reg.latest_analysis(fu2).report_dir) / "report.json").read_text())
    assert [t["study_instance_uid"] for t in report["longitudinal"]["time_points"]] == [fu1, fu2]
    assert report["longitudinal"]["trend"] in ("involuting", "stable")  # no recurrence at 6 months
