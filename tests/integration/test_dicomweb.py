"""DICOMweb against a real Orthanc with its DICOMweb plugin (Debian packages orthanc and
orthanc-dicomweb): results delivered by STOW-RS (HTTP basic auth refused, then accepted; over
https with our CA bundle), and a follow-up's baseline and earlier follow-up found by QIDO-RS and
fetched by WADO-RS, as test_retrieve.py does over DIMSE.

https: Debian's Orthanc 1.10.1 crashes (SIGSEGV) on the first connection to its own HTTPS server
("SslEnabled"), so TLS is terminated in front of it by stunnel (Debian package stunnel4), as a
reverse proxy would in a deployment."""

from __future__ import annotations

import json
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from followup.config import Settings
from followup.job import run_job
from followup.procedure import load_procedure
from followup.remote_nodes import DicomWebEndpoint
from followup.service.delivery import deliver_pending
from followup.service.importer import import_folder
from followup.service.orchestrator import new_analysis, process_analysis
from followup.service.priors import RETRIEVED_PRIOR
from followup.service.registry import Registry
from followup.service.remote import DICOMWEB_ORIGIN
from followup.service.store import Store
from followup.states import StudyRole, StudyState
from followup.synth.surveillance import generate_surveillance
from followup.testing.dicomweb_harness import orthanc_dicomweb, rest, tls_in_front, upload
from followup.testing.service_harness import require

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
USER, PASSWORD = "followup", "stow-secret-0123"


@pytest.fixture(scope="module")
def report(synth_pair, tmp_path_factory):
    pair = synth_pair("complete", 3, "single-series")
    out = tmp_path_factory.mktemp("report")
    return run_job(pair / "followup", pair / "baseline", load_procedure(pair / "procedure.json"), out), out


def _pending_results(report, tmp_path: Path, url: str):
    """A registry holding one analysis of the report's study with its SR, SEG and PDF pending
    delivery to ``url``."""
    result, out = report
    reg = Registry(f"sqlite:///{tmp_path}/r.db")
    study = result.report.studies.followup.study_instance_uid
    reg.record_instance(study_uid=study, series_uid="1.2", sop_uid="1.2.3", sop_class_uid="1.2", path="/x", size=1,
                        patient_id="P", study_date=None, modality="MR", accession_number="", calling_ae="PACS")
    a = reg.get_or_create_analysis(study, "t", 1, "realtime")
    for kind, info in result.report.outputs.items():
        reg.add_delivery(a.id, kind, info.sop_instance_uid, str(out / info.file), url)
    return reg, a, {info.sop_instance_uid for info in result.report.outputs.values()}


def test_results_are_delivered_by_stow_rs(report, tmp_path):
    """Basic auth refused: the objects stay pending with the HTTP status; with the right password
    they are stored in Orthanc (every SOP instance), and a second attempt sends nothing."""
    with orthanc_dicomweb(tmp_path, users={USER: PASSWORD}) as (url, api):
        reg, a, sops = _pending_results(report, tmp_path, url)
        assert {"sr", "seg", "pdf"} <= {d.kind for d in reg.deliveries(analysis_id=a.id)}
        wrong = Settings(data_dir=tmp_path / "data", dicomweb_user=USER, dicomweb_password="wrong")
        assert deliver_pending(wrong, reg, a.id) is False
        rows = reg.deliveries(analysis_id=a.id)
        assert {d.status for d in rows} == {"pending"} and all(d.attempts == 1 for d in rows)
        assert all("HTTP 401" in (d.last_error or "") and "FOLLOWUP_DICOMWEB_USER" in (d.last_error or "")
                   for d in rows)
        assert rest(api, "/instances", auth=(USER, PASSWORD)) == []  # nothing stored
        right = replace(wrong, dicomweb_password=PASSWORD)
        assert deliver_pending(right, reg, a.id) is True
        rows = reg.deliveries(analysis_id=a.id)
        assert {d.status for d in rows} == {"sent"} and all(d.attempts == 2 and d.last_error is None for d in rows)
        stored = {rest(api, f"/instances/{i}", auth=(USER, PASSWORD))["MainDicomTags"]["SOPInstanceUID"]
                  for i in rest(api, "/instances", auth=(USER, PASSWORD))}
        assert stored == sops
        assert deliver_pending(right, reg, a.id) is True  # nothing pending: nothing sent again
        assert len(rest(api, "/instances", auth=(USER, PASSWORD))) == len(sops)


def test_stow_rs_over_https_checks_the_server_certificate(report, tmp_path):
    """Over https the server's certificate must chain to FOLLOWUP_DICOMWEB_CA: without it (the
    system CAs) the objects stay pending with a TLS error; with it they are stored."""
    require("openssl", "openssl")
    certs = tmp_path / "certs"
    res = subprocess.run(["bash", str(ROOT / "scripts" / "make-demo-certs.sh"), str(certs)], capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    with orthanc_dicomweb(tmp_path) as (http_url, api), \
            tls_in_front(tmp_path, http_url, certs / "pacs.pem", certs / "pacs.key") as url:
        reg, a, sops = _pending_results(report, tmp_path, url)
        system_cas = Settings(data_dir=tmp_path / "data")
        assert deliver_pending(system_cas, reg, a.id) is False
        rows = reg.deliveries(analysis_id=a.id)
        assert {d.status for d in rows} == {"pending"} and all("TLS" in (d.last_error or "") for d in rows)
        ours = replace(system_cas, dicomweb_ca=certs / "ca.pem")
        assert deliver_pending(ours, reg, a.id) is True
        assert {d.status for d in reg.deliveries(analysis_id=a.id)} == {"sent"}
        assert len(rest(api, "/instances")) == len(sops)


def test_baseline_and_earlier_followup_are_found_by_qido_and_fetched_by_wado(tmp_path):
    """The 6-month follow-up arrives alone; the baseline and the 1-month follow-up are only on the
    PACS, reached by DICOMweb. The worker finds both (QIDO-RS) and fetches them (WADO-RS): the
    analysis runs against the baseline and compares with the earlier follow-up, kept as a
    retrieved prior (deferred, not analysed on its own)."""
    series = tmp_path / "series"
    truth = generate_surveillance(series, 4)  # baseline + follow-ups at 1, 6 and 12 months
    fu1, fu2 = (tp["study_uid"] for tp in truth["time_points"][:2])
    with orthanc_dicomweb(tmp_path) as (url, api):
        for folder in ("baseline", "followup-1"):
            upload(api, series / folder)
        settings = Settings(data_dir=tmp_path / "data", retrieve_from=DicomWebEndpoint.parse(url))
        store, reg = Store(settings.data_dir), Registry(settings.database_url)
        reg.add_procedure(load_procedure(series / "procedure.json"))
        import_folder(series / "followup-2", store, reg)
        assert reg.study(fu1) is None
        reg.claim_stable_studies(0)
        a = new_analysis(reg, fu2, "realtime")
        out = process_analysis(settings, reg, store, a.id)
    assert out.status == "complete", out.reason
    assert reg.latest_analysis(fu2).baseline_study_uid == truth["baseline"]["study_uid"]
    baseline = reg.study(truth["baseline"]["study_uid"])
    assert baseline.role == StudyRole.BASELINE
    assert baseline.n_instances == len(list((series / "baseline").glob("*.dcm")))
    prior = reg.study(fu1)
    assert prior.n_instances == len(list((series / "followup-1").glob("*.dcm")))
    assert prior.state == StudyState.DEFERRED and prior.role == StudyRole.FOLLOWUP and prior.reason == RETRIEVED_PRIOR
    assert prior.calling_ae == DICOMWEB_ORIGIN  # fetched by WADO-RS, as the registry says
    assert reg.latest_analysis(fu1) is None  # not analysed on its own
    report = json.loads((Path(reg.latest_analysis(fu2).report_dir) / "report.json").read_text())
    assert [t["study_instance_uid"] for t in report["longitudinal"]["time_points"]] == [fu1, fu2]
