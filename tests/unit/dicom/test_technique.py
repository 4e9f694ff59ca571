"""The technique line read from DICOM headers (followup.dicom.technique): every part from what
the headers say, none invented; pydicom's own MR test files and our synthetic study."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from pydicom.data import get_testdata_file

from followup.dicom.header_reader import read_header
from followup.dicom.header_records import AcquisitionHeader, InstanceHeader
from followup.dicom.study import load_dce_study
from followup.dicom.technique import Technique, plane_of, technique, technique_of


def _header(name: str) -> InstanceHeader:
    path = get_testdata_file(name)
    if path is None:
        pytest.skip(f"pydicom test file {name} not installed")
    h = read_header(Path(path))
    assert isinstance(h, InstanceHeader), h
    return h


def test_siemens_fat_suppressed_3d_gradient_echo():
    h = _header("MR-SIEMENS-DICOM-WithOverlays.dcm")
    assert h.acquisition.scan_options == ("SAT2", "FS") and h.acquisition.sequence_name == "*fl3d1"
    assert technique_of([h]).sentence() == (
        "1.5 T, axial 3D T1-weighted spoiled gradient echo with fat suppression, 11 ml Omniscan; "
        "slices 4 mm, in-plane 0.72 x 0.72 mm")


def test_unknown_parts_are_left_out():
    # spin echo, TR 4000 ms (not T1-weighted), no field strength, no contrast, no phases
    t = technique_of([_header("MR_small.dcm")])
    assert t.field_strength_t is None and t.weighting is None and t.fat_suppression is None
    assert t.sentence() == "axial 3D spin echo; slices 0.8 mm, in-plane 0.31 x 0.31 mm"


def test_oblique_sagittal_2d_and_enhanced_mr():
    assert technique_of([_header("MR2_UNCR.dcm")]).sentence().startswith("1.5 T, oblique sagittal 2D spin echo")
    # Enhanced MR: EchoPulseSequence GRADIENT, SpectrallySelectedSuppression NONE, 3 T
    t = technique_of([_header("emri_small.dcm")])
    assert (t.field_strength_t, t.sequence, t.fat_suppression) == (3.0, "gradient echo", False)
    assert t.sentence().startswith("3.0 T, ") and "without fat suppression" in t.sentence()


@pytest.mark.parametrize("iop, plane", [
    ((1, 0, 0, 0, 1, 0), "axial"), ((0, 1, 0, 0, 0, -1), "sagittal"), ((1, 0, 0, 0, 0, -1), "coronal"),
    ((0.57, 0.82, 0, 0, 0, -1), "oblique sagittal")])
def test_plane(iop, plane):
    assert plane_of(iop) == plane


@pytest.mark.parametrize("description, options, said, method", [
    ("Ax T1 VIBRANT Dixon dyn", (), True, "Dixon"), ("t1_fl3d_tra_SPAIR_dyn", (), True, "SPAIR"),
    ("DYN fatsat", (), True, None), ("DYN", ("FS",), True, None), ("DYN", ("FAT_SAT",), True, None),
    ("DYN non-FS", (), False, None), ("DYN", (), None, None), ("DYN", ("PFP",), None, None)])
def test_fat_suppression_from_options_or_description(description, options, said, method):
    h = dataclasses.replace(_header("MR_small.dcm"), series_description=description,
                            acquisition=AcquisitionHeader(scan_options=options))
    t = technique_of([h])
    assert (t.fat_suppression, t.fat_suppression_method) == (said, method)
    assert ("fat suppression" in t.sentence()) == (said is not None)


def test_phases_interval_and_contrast_timing():
    h = dataclasses.replace(_header("MR-SIEMENS-DICOM-WithOverlays.dcm"), contrast_start_time=86390.0)
    # 1 pre + 5 post, intervals 90, 60, 60, 61, 59 s; first post-contrast phase 70 s after the bolus
    # start, across midnight
    t = technique_of([h], [0, 90, 150, 210, 271, 330], [False, True, True, True, True, True],
                     first_post_seconds_of_day=60.0)
    assert (t.phases_pre, t.phases_post, t.temporal_resolution_s) == (1, 5, 60.0)
    assert t.contrast_delay_s == pytest.approx(70.0)
    assert "1 pre- and 5 post-contrast phases every 60 s, 11 ml Omniscan (first post-contrast phase 70 s " \
           "after injection)" in t.sentence()
    # an implausible delay (a wrong clock) is not reported; without contrast flags phase 0 is pre
    late = technique_of([h], [0, 60], [None, None], first_post_seconds_of_day=86390.0 + 4000)
    assert late.contrast_delay_s is None and (late.phases_pre, late.phases_post) == (1, 1)
    assert "1 pre- and 1 post-contrast phase every 60 s" in late.sentence()


def test_nothing_known_gives_an_empty_line():
    assert Technique().sentence() == ""
    assert Technique(slice_thickness_mm=1.5).sentence() == "slices 1.5 mm"


def test_synthetic_study_technique_is_complete(synth_pair):
    study = load_dce_study(synth_pair("residual", 1, "per-phase") / "followup", decode_phases=1)
    t = technique(study)
    assert (t.phases_pre, t.phases_post) == (1, len(study.phases) - 1)
    assert t.contrast_agent == "Gadobutrol 1.0 mmol/ml" and t.contrast_delay_s is not None
    assert 0 < t.contrast_delay_s < 300
    assert t.sentence().startswith("1.5 T, axial 3D T1-weighted spoiled gradient echo with fat suppression, "
                                   f"1 pre- and {len(study.phases) - 1} post-contrast phases every ")
    assert "; slices " in t.sentence() and "in-plane " in t.sentence()
