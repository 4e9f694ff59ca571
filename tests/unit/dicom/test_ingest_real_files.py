"""Ingestion of real DICOM files shipped with pydicom / pydicom-data (read locally)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from followup.dicom import inspect_directory, load_dce_study, scan_directory
from followup.dicom.header_reader import read_header
from followup.dicom.stack import FrameRef, build_volume
from followup.errors import IngestError
from followup.testing.dicom_factory import make_dynamic

TEST_FILES = Path(get_testdata_file("MR_small.dcm")).parent
MR_SERIES = TEST_FILES / "dicomdirtests" / "98892003"


def _single(path: Path):
    h = read_header(path)
    assert not hasattr(h, "reason"), h
    return build_volume([FrameRef(h, fr) for fr in h.frames], path.name)


def _slice_affine_ok(path: Path) -> None:
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    vol, uids = _single(path)
    iop = np.array(ds.ImageOrientationPatient, float)
    ps = np.array(ds.PixelSpacing, float)
    assert uids == [ds.SOPInstanceUID]
    np.testing.assert_allclose(vol.affine[:3, 3], np.array(ds.ImagePositionPatient, float))
    np.testing.assert_allclose(vol.affine[:3, 0], iop[:3] * ps[1], atol=1e-9)
    np.testing.assert_allclose(vol.affine[:3, 1], iop[3:] * ps[0], atol=1e-9)
    normal = np.cross(iop[:3], iop[3:])
    k = vol.affine[:3, 2]
    np.testing.assert_allclose(k / np.linalg.norm(k), normal / np.linalg.norm(normal), atol=1e-9)
    assert vol.shape == (ds.Columns, ds.Rows, 1)


@pytest.mark.parametrize("variant", ["MR_small_implicit.dcm", "MR_small_bigendian.dcm",
                                     "MR_small_RLE.dcm", "MR_small_expb.dcm"])
def test_transfer_syntax_variants_decode_identically(variant: str) -> None:
    ref, _ = _single(Path(get_testdata_file("MR_small.dcm")))
    vol, _ = _single(Path(get_testdata_file(variant)))
    assert vol.data.dtype == np.float32
    np.testing.assert_array_equal(vol.data, ref.data)
    np.testing.assert_allclose(vol.affine, ref.affine)
    # and equal to pydicom's own decoding, transposed to [column, row]
    px = pydicom.dcmread(get_testdata_file(variant)).pixel_array.astype(np.float32)
    np.testing.assert_array_equal(vol.data[:, :, 0], px.T)


def test_mr_small_fast_path_and_affine() -> None:
    path = Path(get_testdata_file("MR_small.dcm"))
    assert read_header(path).pixel_value_offset is not None  # native LE: read with numpy
    _slice_affine_ok(path)


def test_truncated_file_is_rejected_and_errors(tmp_path: Path) -> None:
    shutil.copy(get_testdata_file("MR_truncated.dcm"), tmp_path / "trunc.dcm")
    scan = scan_directory(tmp_path)
    assert scan.instances == []
    assert scan.rejected[0].reason.startswith("truncated: pixel data 8130 bytes, expected 8192")
    with pytest.raises(IngestError) as exc:
        load_dce_study(tmp_path)
    assert exc.value.code == "truncated" and "trunc.dcm" in exc.value.message


def test_dicomdir_series_slices_and_classification() -> None:
    """MR1/MR2/MR700 of pydicom's dicomdirtests are single slices, tri-plane pilots and a
    rotating MIP (7 projections, each with its own orientation): no series is a volume. Each
    slice's affine must reproduce its IPP/IOP; stacking MR700 must refuse the mixed IOPs."""
    files = sorted(p for p in MR_SERIES.rglob("*") if p.is_file())
    assert len(files) == 17
    for f in files:
        _slice_affine_ok(f)
    mr700 = sorted((MR_SERIES / "MR700").iterdir())
    headers = [read_header(p) for p in mr700]
    with pytest.raises(IngestError) as exc:
        build_volume([FrameRef(h, h.frames[0]) for h in headers], "MR700")
    assert exc.value.code == "inconsistent-geometry"
    report = inspect_directory(MR_SERIES)
    studies = report["patients"][0]["studies"]
    assert len(report["patients"]) == 1 and len(studies) == 3
    assert all(s["error"]["code"] == "no-dce" for s in studies)
    reasons = " ".join(s["error"]["message"] for s in studies)
    assert "mixed slice orientations" in reasons and "slice position" in reasons
    with pytest.raises(IngestError) as exc:
        load_dce_study(MR_SERIES / "MR700")
    assert exc.value.code == "no-dce"


def test_oblique_mr2_unci_affine_matches_iop() -> None:
    path = Path(get_testdata_file("MR2_UNCI.dcm"))
    _slice_affine_ok(path)
    vol, _ = _single(path)
    assert vol.shape == (1024, 1024, 1)
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    iop = np.array(ds.ImageOrientationPatient, float)
    cols = vol.affine[:3, :2] / np.linalg.norm(vol.affine[:3, :2], axis=0)
    np.testing.assert_allclose(cols.T.ravel(), iop, atol=1e-9)


def test_enhanced_mr_without_functional_groups_is_no_geometry(tmp_path: Path) -> None:
    shutil.copy(get_testdata_file("emri_small.dcm"), tmp_path / "emri.dcm")
    with pytest.raises(IngestError) as exc:
        load_dce_study(tmp_path)
    assert exc.value.code == "no-geometry"
    assert "emri.dcm" in exc.value.message


def _legacy(slices, series_uid: str, number: int):
    from highdicom.legacy import LegacyConvertedEnhancedMRImage

    for ds in slices:
        ds.file_meta = pydicom.dataset.FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return LegacyConvertedEnhancedMRImage(slices, series_instance_uid=series_uid,
                                          series_number=number,
                                          sop_instance_uid=generate_uid(), instance_number=1)


def test_legacy_converted_multiframe_matches_single_frames(tmp_path: Path) -> None:
    phases, _, _ = make_dynamic(n_phases=3, timing="tpi")
    single = tmp_path / "single"
    multi = tmp_path / "multi"
    multi.mkdir()
    for p, slices in enumerate(phases):
        for k, ds in enumerate(slices):
            ds.file_meta = pydicom.dataset.FileMetaDataset()
            ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
            ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
            ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
            (single / f"p{p}").mkdir(parents=True, exist_ok=True)
            ds.save_as(single / f"p{p}" / f"{k}.dcm", enforce_file_format=True)
    for p, slices in enumerate(phases):
        _legacy(list(reversed(slices)), generate_uid(), 40 + p).save_as(multi / f"mf{p}.dcm")
    a = load_dce_study(single)
    b = load_dce_study(multi)
    assert len(b.phases) == 3
    assert read_header(multi / "mf0.dcm").n_frames == 8
    for pa, pb in zip(a.phases, b.phases, strict=True):
        np.testing.assert_array_equal(pa.volume.data, pb.volume.data)
        np.testing.assert_allclose(pa.volume.affine, pb.volume.affine, atol=1e-6)
        assert pa.time_s == pytest.approx(pb.time_s)
        assert len(set(pb.sop_instance_uids)) == 1 and len(pb.sop_instance_uids) == 8
