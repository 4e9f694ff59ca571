"""Every transfer syntax the listener accepts decodes through our reader (issue 12): real files from
pydicom's test data (and pydicom-data) against their uncompressed reference; stored bits masked in
the fast little-endian reader; undecodable pixel data has its own error code; the accepted list is
what pydicom can decode here, and a syntax without a decoder is refused in negotiation."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom import uid as U
from pydicom.data import get_testdata_file
from pydicom.pixels import get_decoder
from pynetdicom import AE
from pynetdicom.sop_class import MRImageStorage  # type: ignore[attr-defined]

from followup.config import Settings
from followup.dicom import codecs, load_dce_study
from followup.dicom.header_reader import read_header
from followup.dicom.stack import FrameRef, build_volume, read_frames
from followup.errors import IngestError
from followup.service.listener import server
from followup.service.listener.validation import Refused, check_image
from followup.testing.dicom_factory import save, write_dynamic

DCMCJPEG = Path("/usr/bin/dcmcjpeg")
needs_dcmcjpeg = pytest.mark.skipif(not DCMCJPEG.exists(), reason="dcmtk's dcmcjpeg not installed")


def _ours(path: Path) -> np.ndarray:
    """Stored values through our reader (scan header, then ``read_frames``)."""
    h = read_header(path)
    assert not hasattr(h, "reason"), h
    return read_frames(h)  # type: ignore[arg-type]


def _reference(name: str) -> np.ndarray:
    ds = pydicom.dcmread(get_testdata_file(name))
    return ds.pixel_array.reshape(int(ds.get("NumberOfFrames", 1) or 1), ds.Rows, ds.Columns)


def _syntax(path: Path) -> str:
    return str(pydicom.dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID)


# ------------------------------------------------------------------ accepted = decodable


def test_accepted_syntaxes_are_the_decodable_ones() -> None:
    accepted = server.accepted_transfer_syntaxes()
    assert accepted == [ts for ts in codecs.CANDIDATE_SYNTAXES if codecs.can_decode(ts)]
    assert accepted[:2] == [U.ExplicitVRLittleEndian, U.ImplicitVRLittleEndian]
    # the set-up installs these decoders (pyproject.toml): all of these must be accepted
    for ts in (U.DeflatedExplicitVRLittleEndian, U.ExplicitVRBigEndian, U.RLELossless,
               U.JPEGBaseline8Bit, U.JPEGLossless, U.JPEGLosslessSV1, U.JPEGLSLossless,
               U.JPEGLSNearLossless, U.JPEG2000Lossless, U.JPEG2000):
        assert ts in accepted, codecs.syntax_name(ts)
    # HTJ2K: decodable by OpenJPEG, but untested here (no real file, no encoder): not offered
    for ts in (U.HTJ2KLossless, U.HTJ2KLosslessRPCL, U.HTJ2K):
        assert ts not in accepted, codecs.syntax_name(ts)
    # JPEG Extended 12-bit only with pylibjpeg-libjpeg (GPLv3 extra): GDCM/Pillow refuse 12-bit
    libjpeg = "pylibjpeg" in get_decoder(U.JPEGExtended12Bit).available_plugins
    assert (U.JPEGExtended12Bit in accepted) == libjpeg
    ae = server.build_ae(Settings(), allow=["PACS"])
    mr = next(c for c in ae.supported_contexts if c.abstract_syntax == MRImageStorage)
    assert list(mr.transfer_syntax) == accepted


def _negotiate(ae_scp: AE, offered: list[str]) -> list:
    """The accepted presentation contexts when a sender offers ``offered`` for MR, one context
    per syntax (as dcmtk's storescu proposes them)."""
    scp = ae_scp.start_server(("127.0.0.1", 0), block=False)
    try:
        port = scp.socket.getsockname()[1]
        scu = AE(ae_title="PACS")
        for ts in offered:
            scu.add_requested_context(MRImageStorage, [ts])
        assoc = scu.associate("127.0.0.1", port, ae_title="FOLLOWUP")
        assert assoc.is_established
        accepted = [(c.transfer_syntax[0]) for c in assoc.accepted_contexts]
        assoc.release()
        return accepted
    finally:
        scp.shutdown()


def test_syntax_without_decoder_is_refused_in_negotiation(monkeypatch) -> None:
    real = codecs.can_decode
    monkeypatch.setattr(codecs, "can_decode", lambda ts: ts != U.JPEGLosslessSV1 and real(ts))
    assert U.JPEGLosslessSV1 not in server.accepted_transfer_syntaxes()
    ae = server.build_ae(Settings(), allow=["PACS"])
    got = _negotiate(ae, [U.JPEGLosslessSV1, U.JPEG2000Lossless, U.ExplicitVRLittleEndian])
    assert got == [U.JPEG2000Lossless, U.ExplicitVRLittleEndian]  # sender falls back
    monkeypatch.setattr(codecs, "can_decode", real)
    ae = server.build_ae(Settings(), allow=["PACS"])
    assert _negotiate(ae, [U.JPEGLosslessSV1]) == [U.JPEGLosslessSV1]


# ------------------------------------------------------------------ real files, our reader

# (file, its uncompressed reference, largest difference allowed)
REAL_PAIRS = [
    ("MR_small_RLE.dcm", "MR_small.dcm", 0),
    ("MR_small_bigendian.dcm", "MR_small.dcm", 0),
    ("MR_small_expb.dcm", "MR_small.dcm", 0),
    ("MR_small_jpeg_ls_lossless.dcm", "MR_small.dcm", 0),
    ("MR_small_jp2klossless.dcm", "MR_small.dcm", 0),
    ("emri_small_RLE.dcm", "emri_small.dcm", 0),  # Enhanced MR, 10 frames, BitsStored 12
    ("emri_small_big_endian.dcm", "emri_small.dcm", 0),
    ("emri_small_jpeg_ls_lossless.dcm", "emri_small.dcm", 0),
    ("emri_small_jpeg_2k_lossless.dcm", "emri_small.dcm", 0),
    ("MR2_J2KI.dcm", "MR2_J2KR.dcm", 64),  # JPEG 2000 lossy, 1024 x 1024 12-bit MR
]


@pytest.mark.parametrize(("name", "ref", "tol"), REAL_PAIRS, ids=[p[0] for p in REAL_PAIRS])
def test_real_file_decodes_to_its_uncompressed_reference(name: str, ref: str, tol: int) -> None:
    path = Path(get_testdata_file(name))
    assert _syntax(path) in server.accepted_transfer_syntaxes()
    got = _ours(path)
    want = _reference(ref)
    assert got.shape == want.shape
    diff = np.abs(got.astype(np.int64) - want.astype(np.int64))
    if tol == 0:
        np.testing.assert_array_equal(got, want)
    else:
        assert diff.max() <= tol and diff.mean() < 0.01 * np.ptp(want), (diff.max(), diff.mean())
    # and exactly what pydicom's pixel_array makes of the file itself
    np.testing.assert_array_equal(got, _reference(name))


# real files without an uncompressed twin: our reader equals pydicom's own decoding
REAL_SINGLES = ["JPEG-LL.dcm",  # JPEG Lossless SV1, 16-bit signed NM
                "JPGLosslessP14SV1_1s_1f_8b.dcm",  # JPEG Lossless SV1, 8-bit
                "JPEG2000.dcm",  # JPEG 2000 lossy, 16-bit signed
                "693_J2KI.dcm",  # JPEG 2000 lossy CT, signed, BitsStored 14
                "JPEGLSNearLossless_16.dcm", "JPEGLSNearLossless_08.dcm",  # JPEG-LS near-lossless
                "image_dfl.dcm",  # deflated
                "OBXXXX1A_rle_2frame.dcm"]


@pytest.mark.parametrize("name", REAL_SINGLES)
def test_real_file_decodes_as_pydicom_does(name: str) -> None:
    path = Path(get_testdata_file(name))
    assert _syntax(path) in server.accepted_transfer_syntaxes()
    np.testing.assert_array_equal(_ours(path), _reference(name))


def test_jpeg_extended_12bit_only_when_its_decoder_is_installed() -> None:
    path = Path(get_testdata_file("JPGExtended.dcm"))
    if codecs.can_decode(U.JPEGExtended12Bit):
        np.testing.assert_array_equal(_ours(path), _reference("JPGExtended.dcm"))
    else:
        with pytest.raises(IngestError) as exc:
            _ours(path)
        assert exc.value.code == "undecodable" and "JPEG Extended" in exc.value.message


def _mr_small(tmp_path: Path, name: str = "ref.dcm") -> Path:
    out = tmp_path / name
    shutil.copy(get_testdata_file("MR_small.dcm"), out)
    return out


@needs_dcmcjpeg
@pytest.mark.parametrize(("flag", "syntax"), [("+el", U.JPEGLossless), ("+e1", U.JPEGLosslessSV1)])
def test_dcmtk_jpeg_lossless_decodes_exactly(tmp_path: Path, flag: str, syntax: str) -> None:
    """JPEG Lossless process 14 (.57, any predictor) and SV1 (.70) written by dcmtk, a different
    codec from the one decoding them."""
    src = _mr_small(tmp_path)
    out = tmp_path / "jpeg.dcm"
    subprocess.run([str(DCMCJPEG), flag, str(src), str(out)], check=True, capture_output=True)
    assert _syntax(out) == syntax
    np.testing.assert_array_equal(_ours(out), _ours(src))


@needs_dcmcjpeg
def test_dcmtk_jpeg_baseline_8bit_decodes_within_tolerance(tmp_path: Path) -> None:
    ds = pydicom.dcmread(get_testdata_file("MR_small.dcm"))
    px = ds.pixel_array.astype(np.float64)
    px8 = np.round(255 * (px - px.min()) / np.ptp(px)).astype(np.uint8)
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit, ds.PixelRepresentation = 7, 0
    ds.PixelData = px8.tobytes()
    src = save(ds, tmp_path / "ref8.dcm")
    out = tmp_path / "baseline.dcm"
    subprocess.run([str(DCMCJPEG), "+eb", str(src), str(out)], check=True, capture_output=True)
    assert _syntax(out) == U.JPEGBaseline8Bit
    diff = np.abs(_ours(out)[0].astype(int) - px8.astype(int))
    assert diff.mean() < 3 and diff.max() <= 40


@pytest.mark.parametrize(("syntax", "kwargs", "tol"), [
    (U.DeflatedExplicitVRLittleEndian, None, 0),
    (U.RLELossless, {}, 0),
    (U.JPEGLSLossless, {}, 0),
    (U.JPEGLSNearLossless, {"jls_error": 3}, 3),
    (U.JPEG2000Lossless, {}, 0),
])
def test_pydicom_encoded_mr_decodes(tmp_path: Path, syntax: str, kwargs: dict | None, tol: int) -> None:
    ds = pydicom.dcmread(get_testdata_file("MR_small.dcm"))
    want = ds.pixel_array.reshape(1, ds.Rows, ds.Columns).astype(int)
    if kwargs is None:
        ds.file_meta.TransferSyntaxUID = syntax
    else:
        ds.compress(syntax, **kwargs)
    out = tmp_path / "enc.dcm"
    ds.save_as(out, enforce_file_format=True)
    assert _syntax(out) == syntax
    assert np.abs(_ours(out).astype(int) - want).max() <= tol


# ------------------------------------------------------------------ stored bits


def _stray_bits_file(tmp_path: Path, *, signed: bool, frames: int = 1, high_bit: int = 11) -> tuple[Path, np.ndarray]:
    """A 12-bit MR image in 16-bit words with garbage above its stored bits in a few pixels."""
    rng = np.random.default_rng(0)
    rows, cols = 16, 12
    stored = rng.integers(0, 4096, size=(frames, rows, cols), dtype=np.uint16)
    low = high_bit - 11
    words = (stored << low).astype(np.uint16)
    junk = np.zeros_like(words)
    # bits outside the stored ones: above HighBit 11, or below bit 4 when HighBit is 15
    for (r, c), bits in zip([(0, 0), (3, 5), (-1, -1)], [(0xF000, 0x000F), (0xA000, 0x0005),
                                                         (0x1000, 0x0001)], strict=True):
        junk[:, r, c] = bits[1] if low else bits[0]
    words |= junk
    ds = pydicom.dcmread(get_testdata_file("MR_small.dcm"))
    ds.Rows, ds.Columns = rows, cols
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 12, high_bit
    ds.PixelRepresentation = 1 if signed else 0
    if frames > 1:
        ds.NumberOfFrames = frames
    ds.PixelData = words.tobytes()
    ds.file_meta.TransferSyntaxUID = U.ExplicitVRLittleEndian
    path = tmp_path / f"stray_{int(signed)}_{frames}_{high_bit}.dcm"
    ds.save_as(path, enforce_file_format=True)
    return path, stored


@pytest.mark.parametrize("frames", [1, 3])
@pytest.mark.parametrize("signed", [False, True])
def test_stored_bits_masked_like_pydicom(tmp_path: Path, signed: bool, frames: int) -> None:
    path, stored = _stray_bits_file(tmp_path, signed=signed, frames=frames)
    h = read_header(path)
    assert h.pixel_value_offset is not None and h.high_bit == 11  # type: ignore[union-attr]
    got = _ours(path)
    want = pydicom.dcmread(path).pixel_array.reshape(got.shape)
    np.testing.assert_array_equal(got, want)
    if signed:
        assert got.min() >= -2048 and got.max() <= 2047
        np.testing.assert_array_equal(got, np.where(stored >= 2048, stored.astype(int) - 4096, stored))
    else:
        assert got.max() <= 4095 and got[0, 0, 0] == stored[0, 0, 0]
        np.testing.assert_array_equal(got, stored)


@pytest.mark.parametrize("signed", [False, True])
def test_stored_bits_shifted_when_high_bit_is_not_bits_stored_minus_one(tmp_path: Path, signed: bool) -> None:
    """BitsStored 12, HighBit 15: the stored bits are 15..4 (junk in 3..0)."""
    path, stored = _stray_bits_file(tmp_path, signed=signed, high_bit=15)
    got = _ours(path)
    want = np.where(stored >= 2048, stored.astype(int) - 4096, stored) if signed else stored
    np.testing.assert_array_equal(got, want)


def test_stray_bits_do_not_reach_the_volume(tmp_path: Path) -> None:
    """A whole DCE series with BitsStored 12 and garbage above bit 11 loads as pydicom reads it."""
    written = write_dynamic(tmp_path, n_phases=2)
    for phase in written.files:
        for f in phase:
            ds = pydicom.dcmread(f)
            px = ds.pixel_array.copy()
            px[0, 0] |= 0xF000
            ds.BitsStored, ds.HighBit = 12, 11
            ds.PixelData = px.tobytes()
            ds.save_as(f, enforce_file_format=True)
    study = load_dce_study(tmp_path)
    for phase, files in zip(study.phases, written.files, strict=True):
        assert phase.volume.data.max() <= 4095
        first = next(f for f in files if pydicom.dcmread(f).SOPInstanceUID == phase.sop_instance_uids[0])
        np.testing.assert_array_equal(phase.volume.data[:, :, 0], pydicom.dcmread(first).pixel_array.T)


# ------------------------------------------------------------------ undecodable


def test_missing_decoder_is_undecodable_naming_the_syntax(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "jls.dcm"
    shutil.copy(get_testdata_file("MR_small_jpeg_ls_lossless.dcm"), path)
    dec = get_decoder(U.JPEGLSLossless)
    monkeypatch.setattr(dec, "_available", {})  # as if no JPEG-LS decoder were installed
    with pytest.raises(IngestError) as exc:
        build_volume([FrameRef(h, h.frames[0]) for h in [read_header(path)]], "x")  # type: ignore[union-attr]
    assert exc.value.code == "undecodable"
    assert "JPEG-LS Lossless Image Compression (1.2.840.10008.1.2.4.80)" in exc.value.message
    assert "no decoder" in exc.value.message and "truncated" not in exc.value.message
    # and the listener refuses such an instance (an import has no negotiation to refuse it)
    ds = pydicom.dcmread(path, defer_size=4096)
    with pytest.raises(Refused) as ref:
        check_image(ds, path.read_bytes())
    assert ref.value.reason.startswith("undecodable") and "1.2.840.10008.1.2.4.80" in ref.value.reason


def test_corrupt_compressed_data_is_undecodable(tmp_path: Path) -> None:
    ds = pydicom.dcmread(get_testdata_file("MR_small_jpeg_ls_lossless.dcm"))
    frags = bytearray(ds.PixelData)
    frags[40:] = b"\x00" * (len(frags) - 40)  # keep the item tags, wipe the codestream
    ds.PixelData = bytes(frags)
    path = tmp_path / "bad.dcm"
    ds.save_as(path, enforce_file_format=True)
    with pytest.raises(IngestError) as exc:
        _ours(path)
    assert exc.value.code == "undecodable"
    assert "JPEG-LS Lossless" in exc.value.message
