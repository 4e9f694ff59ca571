"""The OHIF viewer opens a study that holds our results: the follow-up's MR series in a real
Orthanc (DICOMweb plugin), our SR, SEG and PDF delivered there by STOW-RS through the service's
delivery, OHIF 3.13.2 (the npm package's built app, scripts/ensure-viewer.sh) served by nginx on
the same origin, opened at the URL the report view's "Open the study in the image viewer" link
makes (``followup.config.viewer_link``). OHIF lists every series of the study (ours among them,
by their descriptions) and shows the first image; opened, our SR shows every finding with its
values on its image, and our SEG lists every segment, each in its own colour.

The SR and SEG are opened on a study whose dynamic phases are one series each: where all phases
share one series, OHIF 3.13.2 makes it a 4D volume and its page stops answering once an SR or SEG
on that series is opened (docs/reports/viewers.md, "OHIF in a browser").
``FOLLOWUP_SCREENSHOTS=DIR`` saves what the viewer showed (1280 x 800)."""

from __future__ import annotations

import contextlib
import os
import re
import time
from pathlib import Path

import pydicom
import pytest

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


VIEWPORT = {"width": 1280, "height": 800}


@pytest.fixture(scope="module")
def residual_in_viewer(chromium, synth_pair, tmp_path_factory):
    """A residual follow-up with two suspicious foci, its phases one series each, in Orthanc with our
    SR, SEG and PDF delivered by STOW-RS, and OHIF in front; yields (the viewer link, the report)."""
    tmp_path = tmp_path_factory.mktemp("ohif-residual")
    pair = synth_pair("residual", 1, "per-phase")
    out = tmp_path / "report"
    result = run_job(pair / "followup", pair / "baseline", load_procedure(pair / "procedure.json"), out)
    assert result.report.status == "complete" and len(result.report.findings.suspicious_foci) >= 2
    study = result.report.studies.followup.study_instance_uid
    with orthanc_dicomweb(tmp_path) as (url, api), ohif_viewer(tmp_path, url) as viewer:
        upload(api, pair / "followup")
        _deliver(result, out, tmp_path, url)
        yield viewer_link(OHIF_TEMPLATE.format(viewer=viewer), study), result.report


def _open(chromium, link: str):
    """A new page at ``link`` once OHIF lists the study's series, its onboarding tour dismissed, and
    the list its page errors are collected in."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    page = chromium.new_page(viewport=VIEWPORT)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(link)
    page.locator('[data-cy="series-description-label"]', has_text="followup:").first.wait_for(timeout=120_000)
    with contextlib.suppress(PlaywrightTimeout):  # no tour shown: nothing to dismiss
        page.get_by_text("Skip all", exact=True).click(timeout=5_000)
    return page, errors


def _open_series(page, description: str) -> None:
    page.locator('[data-cy="series-description-label"]', has_text=description).first.dblclick()


def _viewport_text(page) -> str:
    return page.locator('[data-cy="viewport-pane"]').first.inner_text()


def _wait_text(page, read, needle: str, timeout_s: float = 60.0) -> str:
    deadline = time.monotonic() + timeout_s
    text = read()
    while needle not in text and time.monotonic() < deadline:
        page.wait_for_timeout(500)
        text = read()
    assert needle in text, f"{needle!r} not shown within {timeout_s:.0f} s:\n{text[:2000]}"
    return text


def _shoot(page, name: str) -> None:
    folder = os.environ.get("FOLLOWUP_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / name))


def _expected_labels(report) -> dict[str, list[str]]:
    """What each finding's text box in OHIF's SR viewport must hold, by the start of its first line
    (one line per text box in the page's text), with the report's values as the SR formats them."""
    z = report.findings.ablation_zone
    expected = {"Probability of cancer:": [f"Probability of cancer: {100 * report.residual_probability:.2f} %"],
                "Ablation zone:": [f"Volume: {z.volume_ml:.2f} ml"], "Enhancing rim:": ["Rim thickness (median):"]}
    for n, f in enumerate(report.findings.suspicious_foci, start=1):
        expected[f"Suspicious focus {n}:"] = [f"Long axis: {f.largest_diameter_mm:.2f} mm",
                                              f"Peak percent enhancement: {f.peak_enhancement_pct:.2f} %"]
    return expected


def _missing(expected: dict[str, list[str]], lines: set[str]) -> dict[str, list[str]]:
    """The expected text boxes not shown, or shown without their values."""
    missing = {}
    for start, values in expected.items():
        boxes = [ln for ln in lines if ln.startswith(start)]
        if not any(all(v in box for v in values) for box in boxes):
            missing[start] = values
    return missing


def test_ohif_shows_our_findings_with_their_values_in_its_sr_viewport(chromium, residual_in_viewer):
    link, report = residual_in_viewer
    page, errors = _open(chromium, link)
    try:
        _open_series(page, "followup: residual tumour assessment")
        first = _wait_text(page, lambda: _viewport_text(page), "Probability of cancer")
        assert "SR" in first.split()  # the SR viewport, showing the measurements on their image
        _shoot(page, "ohif-findings.png")
        expected = _expected_labels(report)
        seen = set(first.splitlines())
        # OHIF's arrows step from one measurement to the next, to its image (the foci lie on others)
        for _ in range(3 + 2 * len(report.findings.suspicious_foci)):
            if not _missing(expected, seen):
                break
            page.locator('[data-cy="viewport-action-arrows-right"]').first.click()
            page.wait_for_timeout(1500)
            seen |= set(_viewport_text(page).splitlines())
        if report.findings.suspicious_foci:
            _shoot(page, "ohif-findings-foci.png")
    finally:
        page.close()
    assert _missing(expected, seen) == {}, sorted(seen)
    assert not errors, errors


def test_ohif_shows_our_segments_each_in_its_colour(chromium, residual_in_viewer):
    link, report = residual_in_viewer
    page, errors = _open(chromium, link)
    try:
        _open_series(page, "followup: ablation zone, rim, foci")
        page.get_by_role("button", name="Yes").first.click(timeout=60_000)  # "open this Segmentation?"
        page.locator('[data-cy="panelSegmentation-btn"]').first.click()
        _wait_text(page, lambda: page.inner_text("body"), "Suspicious focus 1")
        rows = page.eval_on_selector_all('[data-cy="data-row"]', """rows => rows.map(r => [
            r.querySelector('[data-cy="data-row-title"]').innerText,
            getComputedStyle(r.querySelector('[data-cy="data-row-colorhex"]')).backgroundColor])""")
        page.get_by_text("Ablation zone", exact=True).first.click()  # OHIF goes to the segment's slices
        page.wait_for_timeout(2000)
        _shoot(page, "ohif-segments.png")
    finally:
        page.close()
    names = ["Ablation zone", "Enhancing rim", "Tumour + margin (mapped)",
             *[f"Suspicious focus {n}" for n in range(1, len(report.findings.suspicious_foci) + 1)]]
    assert [title for title, _ in rows] == names
    colours = [colour for _, colour in rows]
    assert len(set(colours)) == len(colours), rows  # each segment in its own colour
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
