"""The OHIF viewer opens a study that holds our results: the follow-up's MR series in a real
Orthanc (DICOMweb plugin), our SR, SEG and PDF delivered there by STOW-RS through the service's
delivery, OHIF 3.13.2 (the npm package's built app, scripts/ensure-viewer.sh) served by nginx on
the same origin, opened at the URL the report view's "Open the study in the image viewer" link
makes (``followup.config.viewer_link``). OHIF lists every series of the study (ours among them,
by their descriptions) and shows the first image.

Not asserted here (docs/dicomweb.md): opening our SEG hangs the headless page (software WebGL on
two cores), and OHIF's SR display of our SR is issue 23 items 1-2."""

from __future__ import annotations

import re
import time

import pydicom

from followup.config import Settings, viewer_link
from followup.job import run_job
from followup.procedure import load_procedure
from followup.service.delivery import deliver_pending
from followup.service.registry import Registry
from followup.testing.dicomweb_harness import ohif_viewer, orthanc_dicomweb, upload

OHIF_TEMPLATE = "{viewer}/viewer?StudyInstanceUIDs={{study_uid}}"  # as docker-compose.yml's, on nginx's port


def _deliver(result, out, tmp_path, url: str) -> None:
    """Our SR, SEG and PDF to ``url`` by STOW-RS, through the worker's delivery step."""
    reg = Registry(f"sqlite:///{tmp_path}/r.db")
    study = result.report.studies.followup.study_instance_uid
    reg.record_instance(study_uid=study, series_uid="1.2", sop_uid="1.2.3", sop_class_uid="1.2", path="/x", size=1,
                        patient_id="P", study_date=None, modality="MR", accession_number="", calling_ae="PACS")
    a = reg.get_or_create_analysis(study, "t", 1, "realtime")
    for kind, info in result.report.outputs.items():
        reg.add_delivery(a.id, kind, info.sop_instance_uid, str(out / info.file), url)
    assert deliver_pending(Settings(data_dir=tmp_path / "data"), reg, a.id) is True


def test_ohif_opens_the_study_with_our_results(chromium, synth_pair, tmp_path):
    pair = synth_pair("complete", 3, "single-series")
    out = tmp_path / "report"
    result = run_job(pair / "followup", pair / "baseline", load_procedure(pair / "procedure.json"), out)
    ours = {pydicom.dcmread(out / info.file, stop_before_pixels=True).SeriesDescription
            for info in result.report.outputs.values()}
    images = {pydicom.dcmread(f, stop_before_pixels=True).SeriesDescription for f in (pair / "followup").glob("*.dcm")}
    assert len(ours) == 3
    study = result.report.studies.followup.study_instance_uid
    with orthanc_dicomweb(tmp_path) as (url, api), ohif_viewer(tmp_path, url) as viewer:
        upload(api, pair / "followup")
        _deliver(result, out, tmp_path, url)
        link = viewer_link(OHIF_TEMPLATE.format(viewer=viewer), study)
        assert link == f"{viewer}/viewer?StudyInstanceUIDs={study}"
        page = chromium.new_page(viewport={"width": 1400, "height": 900})
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        try:
            page.goto(link)
            listed = _series_listed(page, len(ours | images))
            text = page.inner_text("body")
        except Exception:
            page.screenshot(path=str(tmp_path / "ohif.png"))
            print(f"OHIF's page (screenshot {tmp_path / 'ohif.png'}):\n" + page.inner_text("body")[:3000])
            raise
        finally:
            page.close()
    assert listed == ours | images  # the study browser lists every series: the MR images and ours
    assert re.search(r"I:\d+ \(\d+/\d+\)", text)  # the viewport shows an image (its instance counter)
    assert {"MR", "SR", "SEG", "DOC"} <= set(re.findall(r"\b(MR|SR|SEG|DOC)\b", text))
    assert not errors, errors


def _series_listed(page, n: int, timeout_s: float = 120.0) -> set[str]:
    """The series descriptions in OHIF's study browser once it lists ``n`` of them and the viewport
    shows an image (or what it listed when ``timeout_s`` ran out)."""
    labels = page.locator('[data-cy="series-description-label"]')
    deadline = time.monotonic() + timeout_s
    listed: set[str] = set()
    while time.monotonic() < deadline:
        listed = {t.strip() for t in labels.all_inner_texts()}
        if len(listed) >= n and re.search(r"I:\d+ \(\d+/\d+\)", page.inner_text("body")):
            break
        time.sleep(1)
    return listed
