"""DCE layouts written by the factory: phase order, pre-contrast, geometry, distractors, NIfTI."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from followup.dicom import DCEStudy, inspect_directory, load_dce_study, write_nifti
from followup.dicom.dce_order import description_rank
from followup.testing.dicom_factory import (
    CORONAL,
    PATIENT_ID,
    PATIENT_NAME,
    SAGITTAL,
    Geometry,
    Written,
    make_dynamic,
    rotated_iop,
    write_dynamic,
    write_localizer,
    write_t2,
)


def _check(study: DCEStudy, w: Written, n_phases: int = 4, contrast: bool = True) -> None:
    assert len(study.phases) == n_phases
    assert [p.index for p in study.phases] == list(range(n_phases))
    g = w.geometry
    for p, phase in enumerate(study.phases):
        vol = phase.volume
        assert vol.shape == (g.cols, g.rows, g.n_slices)
        assert vol.data.dtype == np.float32
        np.testing.assert_allclose(vol.affine, g.affine, atol=1e-4)
        # the known world point of the cube centre maps to the cube voxel ...
        ijk = vol.world_to_voxel(w.cube_world)
        np.testing.assert_allclose(ijk, w.cube_voxel, atol=1e-3)
        # ... which holds the phase's cube signal (1000 + 300 p + column gradient)
        i, j, k = w.cube_voxel
        assert vol.data[i, j, k] == 1000 + 300 * p + i % 7
        assert vol.data[0, 0, 0] == 100 + 20 * p
        assert len(phase.sop_instance_uids) == g.n_slices
    means = [float(p.volume.data.mean()) for p in study.phases]
    assert means == sorted(means)  # signal increases with phase: order is right
    if contrast:
        assert study.phases[0].contrast is False and all(p.contrast for p in study.phases[1:])


@pytest.mark.parametrize(
    "layout,timing,ordering",
    [
        ("per-phase", "tpi", "TemporalPositionIdentifier"),
        ("single", "tpi", "TemporalPositionIdentifier"),
        ("single", "trigger", "TriggerTime"),
        ("single", "acqtime", "AcquisitionTime"),
        ("single", "acqtime-2d", "AcquisitionTime"),
        ("per-phase", "acqtime", "AcquisitionTime"),
        ("per-phase", "acqtime-nodate", "AcquisitionTime"),
        ("per-phase", "trigger", "TriggerTime"),
        ("per-phase", "description", "SeriesDescription"),
    ],
)
def test_layouts_and_ordering(tmp_path: Path, layout: str, timing: str, ordering: str) -> None:
    w = write_dynamic(tmp_path, layout=layout, timing=timing)
    study = load_dce_study(tmp_path)
    _check(study, w)
    assert study.ordering == ordering
    assert study.series_uids == w.series_uids
    if timing != "description":
        assert [p.time_s for p in study.phases] == pytest.approx([0, 60, 120, 180], abs=0.01)
    else:
        assert all(np.isnan(p.time_s) for p in study.phases)
    assert study.patient_id == PATIENT_ID
    assert study.laterality == "L" and study.modality == "MR"
    assert PATIENT_ID not in repr(study)


def test_midnight_crossing_is_ordered(tmp_path: Path) -> None:
    # acqtime starts 23:58:30: phases 2, 3 are after midnight (next day's date)
    w = write_dynamic(tmp_path, layout="per-phase", timing="acqtime")
    study = load_dce_study(tmp_path)
    assert [p.series_uid for p in study.phases] == w.series_uids


@pytest.mark.parametrize("iop", [SAGITTAL, CORONAL, rotated_iop(25, 20), rotated_iop(-40, 60)])
def test_orientations_with_nonzero_origin(tmp_path: Path, iop: tuple) -> None:
    geom = Geometry(iop=iop, origin=(37.5, -81.25, 112.0), slice_step=2.5)
    w = write_dynamic(tmp_path, layout="single", timing="tpi", geom=geom)
    _check(load_dce_study(tmp_path), w)


def test_reversed_instance_numbers_and_implicit_vr(tmp_path: Path) -> None:
    w = write_dynamic(tmp_path, layout="per-phase", timing="tpi", reverse_instance_numbers=True,
                      shuffle=False, implicit=True)
    _check(load_dce_study(tmp_path), w)


def test_distractors_are_ignored_with_reasons(tmp_path: Path) -> None:
    w = write_dynamic(tmp_path / "dyn", layout="per-phase", timing="tpi")
    write_localizer(tmp_path / "other", w.study_uid)
    write_t2(tmp_path / "other", w.study_uid)
    (tmp_path / "notes.txt").write_text("not dicom")
    ct = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ct.PatientID, ct.StudyInstanceUID, ct.SeriesDescription = PATIENT_ID, w.study_uid, "ct"
    ct.save_as(tmp_path / "ct.dcm")
    shutil.copy(get_testdata_file("DICOMDIR"), tmp_path / "DICOMDIR")
    study = load_dce_study(tmp_path)
    _check(study, w)
    reasons = {s.description: s.reason for s in study.ignored_series}
    assert "localizer" in reasons["3-plane loc"]
    assert "RepetitionTime" in reasons["T2 tse"]
    assert reasons["ct"] == "modality CT, not MR"
    rejected = sorted(r.reason for r in study.rejected_files)
    assert rejected[0].startswith("no pixel data") and rejected[1] == "not a DICOM file"


def test_derived_subtraction_ignored_when_originals_exist(tmp_path: Path) -> None:
    w = write_dynamic(tmp_path / "orig", layout="per-phase", timing="tpi")
    phases, _, _ = make_dynamic(n_phases=3, timing="tpi", study_uid=w.study_uid, series_number=60)
    for p, slices in enumerate(phases):
        for k, ds in enumerate(slices):
            ds.ImageType = ["DERIVED", "SECONDARY", "SUBTRACTION"]
            from followup.testing.dicom_factory import save

            save(ds, tmp_path / "sub" / f"{p}_{k}.dcm")
    study = load_dce_study(tmp_path)
    _check(study, w)
    assert sum("derived" in s.reason for s in study.ignored_series) == 3


def test_two_dynamics_choose_most_phases_and_warn(tmp_path: Path) -> None:
    w = write_dynamic(tmp_path / "a", layout="single", timing="tpi", n_phases=4)
    other = replace(Geometry(), pixel_spacing=(0.9, 0.9))
    write_dynamic(tmp_path / "b", layout="single", timing="tpi", n_phases=2, geom=other,
                  study_uid=w.study_uid)
    study = load_dce_study(tmp_path)
    _check(study, w)
    assert any("several dynamics" in m for m in study.warnings)


def test_single_multiframe_object_with_all_phases(tmp_path: Path) -> None:
    from highdicom.legacy import LegacyConvertedEnhancedMRImage

    geom = Geometry()
    w = Written(root=tmp_path, geometry=geom, series_uids=[], cube_voxel=(6, 5, 3))
    phases, _, _ = make_dynamic(n_phases=3, timing="tpi")
    flat = [ds for slices in phases for ds in slices]
    for ds in flat:
        ds.SeriesInstanceUID = phases[0][0].SeriesInstanceUID
        ds.file_meta = pydicom.dataset.FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    mf = LegacyConvertedEnhancedMRImage(flat[::-1], series_instance_uid=generate_uid(),
                                        series_number=5, sop_instance_uid=generate_uid(),
                                        instance_number=1)
    mf.save_as(tmp_path / "all.dcm")
    study = load_dce_study(tmp_path)
    # highdicom drops ContrastBolusAgent (it differs between source images): no contrast info
    _check(study, w, n_phases=3, contrast=False)
    assert study.ordering == "TemporalPositionIndex"
    assert [p.time_s for p in study.phases] == pytest.approx([0, 60, 120])


def test_inspect_directory_two_studies_json(tmp_path: Path) -> None:
    write_dynamic(tmp_path / "baseline", layout="per-phase", timing="tpi")
    w = write_dynamic(tmp_path / "followup", layout="single", timing="trigger",
                      geom=Geometry(iop=SAGITTAL, origin=(10.0, 20.0, 30.0)))
    write_t2(tmp_path / "followup", w.study_uid)
    report = inspect_directory(tmp_path)
    text = json.dumps(report)  # JSON-serialisable
    assert PATIENT_ID not in text and PATIENT_NAME.split("^")[0] not in text
    (patient,) = report["patients"]
    assert len(patient["studies"]) == 2
    fu = next(s for s in patient["studies"] if s["study_uid"] == w.study_uid)
    dce = fu["dce"]
    assert dce["n_phases"] == 4 and dce["ordering"] == "TriggerTime"
    assert dce["times_s"] == [0.0, 60.0, 120.0, 180.0]
    assert dce["orientation"] == "sagittal" and dce["matrix"] == [24, 20, 8]
    np.testing.assert_allclose(dce["affine_lps"], w.geometry.affine, atol=1e-5)
    assert dce["phases"][3]["max"] > dce["phases"][0]["max"]
    assert fu["ignored_series"][0]["description"] == "T2 tse"
    with pytest.raises(Exception) as exc:
        load_dce_study(tmp_path)
    assert getattr(exc.value, "code", None) == "multiple-studies"


def test_write_nifti_ras(tmp_path: Path) -> None:
    w = write_dynamic(tmp_path / "dcm", layout="single", timing="tpi",
                      geom=Geometry(iop=rotated_iop(), origin=(5.0, -7.0, 3.0)))
    study = load_dce_study(tmp_path / "dcm")
    paths = write_nifti(study, tmp_path / "nii")
    assert [p.name for p in paths] == [f"phase_{i:02d}.nii.gz" for i in range(4)]
    for p, phase in zip(paths, study.phases, strict=True):
        img = nib.load(p)
        np.testing.assert_allclose(img.affine, np.diag([-1.0, -1.0, 1.0, 1.0]) @ w.geometry.affine,
                                   atol=1e-4)
        np.testing.assert_array_equal(np.asarray(img.dataobj), phase.volume.data)


@pytest.mark.parametrize("desc,rank", [("T1 DYN pre", 0), ("dyn post 3", 3), ("Ph2/fl3d", 2),
                                       ("T1 vibe 1.5mm post", 1), ("sub 2-1", 1)])
def test_description_rank(desc: str, rank: int) -> None:
    assert description_rank(desc) == rank
