"""Bad input: every failure is an IngestError with a specific code and no patient identifiers."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import generate_uid

from followup.dicom import inspect_directory, load_dce_study, scan_directory
from followup.errors import IngestError
from followup.testing.dicom_factory import (
    BIRTH_DATE,
    PATIENT_ID,
    PATIENT_NAME,
    Geometry,
    Written,
    write_dynamic,
    write_localizer,
    write_t2,
)

OTHER_ID = "OTHERPATIENT-555"


def _fails(path: Path, code: str, fn: Callable = load_dce_study) -> IngestError:
    with pytest.raises(IngestError) as exc:
        fn(path)
    err = exc.value
    assert err.code == code, err.message
    for secret in (PATIENT_ID, OTHER_ID, BIRTH_DATE, *PATIENT_NAME.split("^")):
        assert secret not in err.message
    return err


def _edit(path: Path, **changes: object) -> None:
    ds = pydicom.dcmread(path)
    for k, v in changes.items():
        setattr(ds, k, v)
    ds.save_as(path)


def _dyn(tmp_path: Path, **kw: object) -> Written:
    opts = {"layout": "per-phase", "timing": "tpi", **kw}
    return write_dynamic(tmp_path, **opts)  # type: ignore[arg-type]


def test_missing_and_empty_folder(tmp_path: Path) -> None:
    _fails(tmp_path / "nope", "not-found")
    _fails(tmp_path / "nope", "not-found", inspect_directory)
    (tmp_path / "empty").mkdir()
    _fails(tmp_path / "empty", "not-found")


def test_non_dicom_bytes(tmp_path: Path) -> None:
    (tmp_path / "a.dcm").write_bytes(np.random.default_rng(0).bytes(4096))
    (tmp_path / "b.txt").write_text("hello")
    (tmp_path / "c.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"\x02\x00")  # broken header
    scan = scan_directory(tmp_path)
    assert len(scan.rejected) == 3 and not scan.instances
    err = _fails(tmp_path, "no-dicom")
    assert "3 file(s) rejected" in err.message
    _fails(tmp_path, "no-dicom", inspect_directory)


def test_truncated_file_in_dce_series(tmp_path: Path) -> None:
    w = _dyn(tmp_path)
    victim = w.files[2][5]
    data = victim.read_bytes()
    victim.write_bytes(data[:-100])
    scan = scan_directory(tmp_path)
    (rej,) = scan.rejected
    assert rej.reason == f"truncated: pixel data {24 * 20 * 2 - 100} bytes, expected {24 * 20 * 2}"
    err = _fails(tmp_path, "truncated")
    assert victim.name in err.message


def test_missing_slice(tmp_path: Path) -> None:
    w = _dyn(tmp_path)
    w.files[1][4].unlink()
    err = _fails(tmp_path, "missing-slices")
    assert "1 slice(s) missing" in err.message and "phase 1" in err.message


def test_two_missing_slices_single_series(tmp_path: Path) -> None:
    w = _dyn(tmp_path, layout="single")
    w.files[3][2].unlink()
    w.files[3][3].unlink()
    err = _fails(tmp_path, "missing-slices")
    assert "2 slice(s) missing" in err.message


def test_duplicate_slice(tmp_path: Path) -> None:
    w = _dyn(tmp_path)
    src = w.files[2][3]
    dup = src.parent / "copy_of_slice"
    shutil.copy(src, dup)
    _edit(dup, SOPInstanceUID=generate_uid())
    err = _fails(tmp_path, "duplicate-slices")
    assert "copy_of_slice" in err.message or src.name in err.message


def test_duplicate_slice_after_phase_split(tmp_path: Path) -> None:
    w = _dyn(tmp_path, layout="single")
    src = w.files[1][6]
    shutil.copy(src, src.parent / "extra")
    _edit(src.parent / "extra", SOPInstanceUID=generate_uid())
    _fails(tmp_path, "duplicate-slices")


def test_nonuniform_spacing(tmp_path: Path) -> None:
    w = _dyn(tmp_path)
    g = w.geometry
    ipp = g.ipp(4) + np.array([0.0, 0.0, 1.0])
    _edit(w.files[0][4], ImagePositionPatient=[f"{v:.4f}" for v in ipp])
    err = _fails(tmp_path, "nonuniform-spacing")
    assert "phase 0" in err.message


def test_inconsistent_geometry_within_phase(tmp_path: Path) -> None:
    w = _dyn(tmp_path)
    _edit(w.files[1][2], PixelSpacing=["1.6", "1.25"])
    err = _fails(tmp_path, "inconsistent-geometry")
    assert "PixelSpacing" in err.message


@pytest.mark.filterwarnings("ignore:Invalid value for VR DS")
def test_nan_in_ipp(tmp_path: Path) -> None:
    w = _dyn(tmp_path)
    _edit(w.files[3][1], ImagePositionPatient=["NaN", "-40.0", "13.0"])
    err = _fails(tmp_path, "bad-geometry")
    assert "ImagePositionPatient" in err.message


def test_mixed_patients(tmp_path: Path) -> None:
    _dyn(tmp_path / "a")
    write_dynamic(tmp_path / "b", patient_id=OTHER_ID)
    _fails(tmp_path, "mixed-patients")
    _fails(tmp_path, "mixed-patients", inspect_directory)


def test_no_dce(tmp_path: Path) -> None:
    w = _dyn(tmp_path, n_phases=1)
    write_localizer(tmp_path, w.study_uid)
    write_t2(tmp_path, w.study_uid)
    err = _fails(tmp_path, "no-dce")
    for text in ("3-plane loc", "localizer", "T2 tse", "RepetitionTime", "T1 fl3d dyn",
                 "single-phase"):
        assert text in err.message
    report = inspect_directory(tmp_path)
    assert report["patients"][0]["studies"][0]["error"]["code"] == "no-dce"


def test_inconsistent_phase_geometry(tmp_path: Path) -> None:
    w = _dyn(tmp_path)
    for k, f in enumerate(w.files[2]):
        ipp = w.geometry.ipp(k) + np.array([2.0, 0.0, 0.0])
        _edit(f, ImagePositionPatient=[f"{v:.4f}" for v in ipp])
    err = _fails(tmp_path, "inconsistent-phase-geometry")
    assert "phase 2" in err.message


def test_phase_with_fewer_slices_is_inconsistent(tmp_path: Path) -> None:
    w = _dyn(tmp_path)
    w.files[1][7].unlink()  # last slice: the phase is just shorter, no gap
    _fails(tmp_path, "inconsistent-phase-geometry")


def test_unorderable_phases(tmp_path: Path) -> None:
    w = _dyn(tmp_path, timing="description")
    for phase in w.files:
        for f in phase:
            _edit(f, SeriesDescription="T1 dyn")
    _fails(tmp_path, "unordered-phases")


def test_contrast_disagreeing_with_time_warns(tmp_path: Path) -> None:
    w = _dyn(tmp_path, timing="acqtime")
    for f in w.files[0]:
        _edit(f, ContrastBolusAgent="Gadobutrol")
    for f in w.files[2]:
        del_ds = pydicom.dcmread(f)
        del del_ds.ContrastBolusAgent
        del_ds.save_as(f)
    study = load_dce_study(tmp_path)
    assert study.phases[0].contrast is True
    assert any("earliest phase" in m for m in study.warnings)
    assert any("disagree" in m for m in study.warnings)


def test_uncompressed_reader_never_crashes_on_garbage_geometry(tmp_path: Path) -> None:
    geom = Geometry()
    w = _dyn(tmp_path, geom=geom)
    _edit(w.files[0][0], ImageOrientationPatient=["1", "0", "0", "1", "0", "0"])
    with pytest.raises(IngestError):
        load_dce_study(tmp_path)
