"""Our SR and SEG read by software nobody here wrote (issue 23): OHIF 3's SR SOP-class handler logic
with OHIF's own libraries (dcmjs, @cornerstonejs/adapters; tools/viewer-readers/read-sr-seg.mjs),
and the readers 3D Slicer uses (dcmqi: tid1500reader, segimage2itkimage); plus dciodvfy and
dcentvfy. On a residual synthetic pair and on a surveillance series read with its two priors.

The tools are installed by the set-up (`make tools`: apt nodejs/npm, `npm ci` in
tools/viewer-readers; dcmqi from PyPI in the dev extra); a test whose tool is missing skips loudly.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pydicom
import pytest
from typer.testing import CliRunner

from followup.cli import app
from followup.job import run_job
from followup.procedure import load_procedure
from followup.reporting.model import Report
from followup.synth.surveillance import generate_surveillance

pytestmark = pytest.mark.slow

READERS = Path(__file__).resolve().parents[2] / "tools" / "viewer-readers"
OUTLINE_PREFIX = "Cornerstone3DTools@^0.1.0:PlanarFreehandROI:"


def _tool(name: str) -> str:
    import sys

    found = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    if found is None:
        pytest.skip(f"{name} is not installed (dcmqi from PyPI, `make setup`): NOT read by Slicer's readers")
    return found


def _node_reader() -> list[str]:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed (apt nodejs, `make tools`): OHIF's libraries did NOT read our objects")
    if not (READERS / "node_modules" / "@cornerstonejs" / "adapters").is_dir():
        pytest.skip("tools/viewer-readers has no node_modules (`make tools` runs npm ci): OHIF's libraries "
                    "did NOT read our objects")
    return [node, str(READERS / "read-sr-seg.mjs")]


def _read_with_ohif(out: Path, image_dirs: list[Path]) -> dict:
    cmd = [*_node_reader(), "--sr", str(out / "sr.dcm"), "--seg", str(out / "seg.dcm")]
    for d in image_dirs:
        cmd += ["--images", str(d)]
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=READERS, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    return json.loads(res.stdout)


@pytest.fixture(scope="module")
def residual(synth_pair, tmp_path_factory):
    pair = synth_pair("residual", 1, "per-phase")
    out = tmp_path_factory.mktemp("viewers-residual")
    res = run_job(pair / "followup", pair / "baseline", load_procedure(pair / "procedure.json"), out)
    report = res.report
    assert report.status == "complete" and report.findings.suspicious_foci
    return out, report, [pair / "followup"]


@pytest.fixture(scope="module")
def surveillance(tmp_path_factory):
    d = tmp_path_factory.mktemp("viewers-series")
    truth = generate_surveillance(d, 4)  # three follow-ups; a nodule appears at the last one
    out = tmp_path_factory.mktemp("viewers-series-report")
    res = CliRunner().invoke(app, ["analyze", "--baseline", str(d / "baseline"), "--followup", str(d / "followup-3"),
                                   "--prior", str(d / "followup-1"), "--prior", str(d / "followup-2"),
                                   "--procedure", str(d / "procedure.json"), "--out", str(out)])
    assert res.exit_code == 0, res.output
    report = Report.model_validate_json((out / "report.json").read_text())
    assert report.status == "complete" and report.longitudinal is not None
    return out, report, [d / "followup-3", d / "followup-1", d / "followup-2"], truth


def _findings(report: Report) -> list[str]:
    return ["Ablation zone", "Enhancing rim",
            *[f"Suspicious focus {n}" for n in range(1, len(report.findings.suspicious_foci) + 1)]]


def _label(m: dict, name: str) -> str:
    return next(x["value"] for x in m["labels"] if x["label"] == name)


def _check_ohif(got: dict, out: Path, report: Report) -> dict[str, dict]:
    """What OHIF 3 shows of our SR and SEG: every finding, with its values, image and outline."""
    sr = got["sr"]
    assert sr["isImagingMeasurementReport"]
    sr_ds = pydicom.dcmread(out / "sr.dcm")
    assert sr["referencedImages"], "no Image Library"
    by_name = {m["TrackingIdentifier"]: m for m in sr["measurements"]}
    for name in ["Residual tumour assessment", *_findings(report)]:
        m = by_name[name]
        assert m["loaded"] and m["ReferencedSOPInstanceUID"] and m["worldPoints"] >= 1, name
    assert all(m["loaded"] for m in sr["measurements"]), "a measurement OHIF could not place on an image"
    a = by_name["Residual tumour assessment"]
    assert _label(a, "Probability of cancer") == f"{100 * report.residual_probability:.2f} %"
    z = by_name["Ablation zone"]
    assert _label(z, "Volume") == f"{report.findings.ablation_zone.volume_ml:.2f} ml"
    assert z["graphicType"] == "POLYLINE" and z["worldPoints"] == 37
    for n, f in enumerate(report.findings.suspicious_foci, start=1):
        m = by_name[f"Suspicious focus {n}"]
        assert _label(m, "Long axis") == f"{f.largest_diameter_mm:.2f} mm"
        assert _label(m, "Peak percent enhancement") == f"{f.peak_enhancement_pct:.2f} %"
    # Cornerstone3D's hydration: one closed freehand contour per finding, labelled with its name
    annotations = {a["label"]: a for a in sr["annotations"]}
    for name in _findings(report):
        ann = annotations[name]
        assert ann["toolType"] == "PlanarFreehandROI" and ann["contourPoints"] >= 36
        assert ann["TrackingUniqueIdentifier"] == by_name[name]["TrackingUniqueIdentifier"]
    # the SEG: every segment on its slices, each in its own colour; the SR's volumes are its voxels
    seg = got["seg"]
    segments = {s["SegmentLabel"]: s for s in seg["segments"]}
    assert len(segments) == 3 + len(report.findings.suspicious_foci)
    assert all(s["voxels"] > 0 and s["slices"] > 0 for s in segments.values())
    colours = [tuple(s["rgb"]) for s in segments.values()]
    assert None not in colours and len(set(colours)) == len(colours)
    seg_ds = pydicom.dcmread(out / "seg.dcm", stop_before_pixels=True)
    pm = seg_ds.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0]
    voxel_ml = float(pm.PixelSpacing[0]) * float(pm.PixelSpacing[1]) * float(pm.SpacingBetweenSlices) / 1000
    for name in [n for n in _findings(report) if n.startswith("Suspicious")] + ["Ablation zone"]:
        # the SR's value was rounded once before it was written and the label rounds it again: equal
        # to the voxels' volume within those roundings (15.975 ml read "15.98 ml" against 15.97499)
        label = _label(by_name[name], "Volume")
        assert label.endswith(" ml"), label
        assert abs(float(label[:-3]) - segments[name]["voxels"] * voxel_ml) <= 0.0051, (name, label)
    assert str(sr_ds.StudyInstanceUID) == str(seg_ds.StudyInstanceUID)
    return by_name


def test_ohif_reads_the_residual_pair(residual):
    out, report, images = residual
    _check_ohif(_read_with_ohif(out, images), out, report)


def test_ohif_reads_the_surveillance_series_with_its_priors(surveillance):
    out, report, images, truth = surveillance
    by_name = _check_ohif(_read_with_ohif(out, images), out, report)
    # each time point on its own study's images (the priors' images are loaded as their series are)
    sr = pydicom.dcmread(out / "sr.dcm")
    study_of = {str(r.ReferencedSOPInstanceUID): str(e.StudyInstanceUID)
                for seq in ("CurrentRequestedProcedureEvidenceSequence", "PertinentOtherEvidenceSequence")
                for e in sr.get(seq, []) for s in e.ReferencedSeriesSequence for r in s.ReferencedSOPSequence}
    for tp in truth["time_points"]:
        m = next(v for k, v in by_name.items() if k.startswith("Ablation zone,") and tp["study_date"] in k)
        assert m["loaded"] and study_of[m["ReferencedSOPInstanceUID"]] == tp["study_uid"]
        assert any(x["label"] == "Volume" for x in m["labels"])


def _tid1500(out: Path, tmp_path: Path) -> dict:
    res = subprocess.run([_tool("tid1500reader"), "--inputDICOM", str(out / "sr.dcm"),
                          "--outputMetadata", str(tmp_path / "sr.json")], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    return json.loads((tmp_path / "sr.json").read_text())


@pytest.mark.parametrize("case", ["residual", "surveillance"])
def test_dcmqi_reads_the_sr_and_seg(case, request, tmp_path):
    data = request.getfixturevalue(case)
    out, report = data[0], data[1]
    doc = _tid1500(out, tmp_path)
    groups = {m["TrackingIdentifier"]: m for m in doc["Measurements"]}
    seg_uid = str(pydicom.dcmread(out / "seg.dcm", stop_before_pixels=True).SOPInstanceUID)
    for name in _findings(report):
        g = groups[name]
        assert g["segmentationSOPInstanceUID"] == seg_uid and g["measurementItems"], name
        assert g["measurementAlgorithmIdentification"]["AlgorithmName"] == report.algorithm.name
        outline = groups[OUTLINE_PREFIX + name]
        assert outline["TrackingUniqueIdentifier"] == g["TrackingUniqueIdentifier"]
        assert [i["quantity"]["CodeMeaning"] for i in outline["measurementItems"]] == ["Area"]
    assessment = groups["Residual tumour assessment"]
    probability = next(i for i in assessment["measurementItems"] if i["quantity"]["CodeValue"] == "111047")
    assert float(probability["value"]) == pytest.approx(100 * report.residual_probability)
    words = [e["conceptValue"] for e in assessment["qualitativeEvaluations"] if isinstance(e["conceptValue"], str)]
    assert all(c.text in words for c in report.caveats) and report.caveats
    assert all(any(w.startswith(f"[{r.code}] ") for w in words) for r in report.recommendations)
    coded = {e["conceptCode"]["CodeValue"]: e["conceptValue"] for e in assessment["qualitativeEvaluations"]
             if isinstance(e["conceptValue"], dict)}
    assert coded["111005"]["CodingSchemeDesignator"] == "SCT"  # the BI-RADS category, coded
    if report.longitudinal is not None:
        points = [g["timePoint"] for g in doc["Measurements"] if "timePoint" in g]
        assert points == [t.study_date for t in report.longitudinal.time_points]
    # segimage2itkimage: one image per segment, each with its own display colour
    res = subprocess.run([_tool("segimage2itkimage"), "--inputDICOM", str(out / "seg.dcm"),
                          "--outputDirectory", str(tmp_path), "--outputType", "nrrd"],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    meta = json.loads((tmp_path / "meta.json").read_text())
    segments = [s for group in meta["segmentAttributes"] for s in group]
    assert len(segments) == 3 + len(report.findings.suspicious_foci)
    colours = [tuple(s["recommendedDisplayRGBValue"]) for s in segments]
    assert len(set(colours)) == len(colours)
    assert len(list(tmp_path.glob("*.nrrd"))) == len(segments)


# dicom3tools' module tables (libsrc/standard/module/base.tpl) list AccessionNumber in the Request
# Attributes macro, declared InformationEntity="Series" and invoked by the General Series and
# Encapsulated Document Series modules, but not by the SR Document Series module: dcentvfy gives
# AccessionNumber the Series IE in images, SEGs and PDFs and the Study IE in SRs, and notes the
# difference between any SR and any image whatever the values (docs/reports/viewers.md).
DICOM3TOOLS_IE_NOTE = ("Warning - Different information entities for attribute - Element=<AccessionNumber> "
                       "IE <Study> versus <Series>")
STUDY_KEYWORDS = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyInstanceUID", "StudyDate",
                  "StudyTime", "StudyID", "AccessionNumber", "ReferringPhysicianName", "StudyDescription")


def _dcentvfy(files: list[Path]) -> list[str]:
    res = subprocess.run(["dcentvfy", *map(str, files)], capture_output=True, text=True, timeout=120)
    return [ln for ln in (res.stdout + res.stderr).splitlines() if ln.strip()]


def _reference_sr_and_image(tmp_path: Path) -> list[Path]:
    """An SR and an image nobody here made, in one study: pydicom's test files ``test-SR.dcm``
    (DCMTK's Comprehensive SR test document) and ``MR_small.dcm``, the image given the SR's
    patient and study attributes (the SR is not touched)."""
    from pydicom.data import get_testdata_file

    sr_file = Path(str(get_testdata_file("test-SR.dcm")))
    sr = pydicom.dcmread(sr_file, stop_before_pixels=True)
    image = pydicom.dcmread(str(get_testdata_file("MR_small.dcm")))
    for kw in STUDY_KEYWORDS:
        if kw in sr:
            setattr(image, kw, sr.get(kw))
        elif kw in image:
            delattr(image, kw)
    image.save_as(tmp_path / "reference-mr.dcm")
    return [sr_file, tmp_path / "reference-mr.dcm"]


def test_dciodvfy_and_dcentvfy_find_nothing_in_our_objects(surveillance, tmp_path):
    out, _report, images, _ = surveillance
    if shutil.which("dciodvfy") is None or shutil.which("dcentvfy") is None:
        pytest.skip("dicom3tools (dciodvfy, dcentvfy) is not installed: DICOM validity NOT checked")
    ours = [out / "sr.dcm", out / "seg.dcm", out / "report-pdf.dcm"]
    for f in ours:
        res = subprocess.run(["dciodvfy", str(f)], capture_output=True, text=True)
        assert [ln for ln in (res.stdout + res.stderr).splitlines() if ln.startswith("Error")] == [], f.name
    source = sorted(images[0].glob("*.dcm"))[0]
    # dcentvfy's one note on our objects is its own: the same note for an SR and an image that
    # are not ours (with an empty AccessionNumber in both), and none between two images
    reference = _reference_sr_and_image(tmp_path)
    assert [n for n in _dcentvfy(reference) if "AccessionNumber" in n] == [
        f"{DICOM3TOOLS_IE_NOTE} for file <{reference[0]}> versus <{reference[1]}>"]
    assert not [n for n in _dcentvfy([out / "seg.dcm", out / "report-pdf.dcm", source]) if "AccessionNumber" in n]
    notes = _dcentvfy([*ours, source])
    assert [n for n in notes if not n.startswith(DICOM3TOOLS_IE_NOTE)] == []
    assert {n.split(" for file <")[1].split(">")[0] for n in notes} <= {str(out / "sr.dcm")}  # only the SR's
    study = {kw: {str(pydicom.dcmread(f, stop_before_pixels=True).get(kw, "")) for f in [*ours, source]}
             for kw in ("AccessionNumber", "StudyDescription", "StudyInstanceUID", "PatientID", "StudyID")}
    assert all(len(v) == 1 for v in study.values()), study
    for f in ours:
        ds = pydicom.dcmread(f, stop_before_pixels=True)
        assert (ds.Manufacturer, ds.ManufacturerModelName) == ("followup", _report.algorithm.name)
        assert ds.SoftwareVersions == _report.algorithm.version
        assert not any("highdicom" in str(e.get("ManufacturerModelName", ""))
                       for e in ds.get("ContributingEquipmentSequence", []))
        product = [e for e in ds.ContributingEquipmentSequence if e.ManufacturerModelName == _report.algorithm.name]
        assert product and product[0].PurposeOfReferenceCodeSequence[0].CodeValue == "109102"
