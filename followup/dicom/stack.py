"""Turn the frames of one phase into a :class:`Volume`: geometry checks, affine, pixel decoding.

Geometry is pure maths on arrays (``slice_geometry``); pixel reading is the only I/O. Native
little-endian pixel data are read straight from the offset recorded at scan time with numpy and
masked to their stored bits; compressed, deflated or big-endian data go through pydicom's decoders
(``followup.dicom.codecs``); pixel data that cannot be decoded is ``undecodable``.
"""

from __future__ import annotations

import mmap
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from followup.dicom.codecs import can_decode, prefer_fast_plugins, syntax_name
from followup.dicom.header_records import FrameHeader, InstanceHeader
from followup.errors import IngestError
from followup.volume import Volume

IOP_TOL = 1e-3  # direction cosine components
SPACING_REL_TOL = 1e-3


@dataclass(frozen=True)
class FrameRef:
    """One 2D frame: the file header it lives in and its own frame header."""

    inst: InstanceHeader
    frame: FrameHeader

    @property
    def sop_uid(self) -> str:
        return self.inst.sop_uid


@dataclass(frozen=True)
class SliceGeometry:
    """Result of checking a phase's geometry: the frame order along k and the LPS affine."""

    order: np.ndarray
    affine: np.ndarray


def normal_of(iop: np.ndarray) -> np.ndarray:
    """Slice normal = cross(row cosine, column cosine)."""
    return np.cross(iop[:3], iop[3:])


def orientation_label(iop: np.ndarray, tol_deg: float = 10.0) -> str:
    """'axial' | 'sagittal' | 'coronal' | 'oblique' from the slice normal (within ``tol_deg``)."""
    n = normal_of(np.asarray(iop, dtype=float))
    n = n / np.linalg.norm(n)
    axis = int(np.argmax(np.abs(n)))
    if abs(n[axis]) < np.cos(np.deg2rad(tol_deg)):
        return "oblique"
    return ("sagittal", "coronal", "axial")[axis]


def _check_iop(iop: np.ndarray, label: str) -> None:
    r, c = iop[:3], iop[3:]
    if abs(np.linalg.norm(r) - 1) > 1e-2 or abs(np.linalg.norm(c) - 1) > 1e-2 or abs(r @ c) > 1e-2:
        raise IngestError(
            f"{label}: ImageOrientationPatient {list(np.round(iop, 5))} is not two orthonormal "
            "direction cosines",
            code="bad-geometry",
        )


def slice_geometry(
    ipp: np.ndarray,
    iop: np.ndarray,
    spacing: np.ndarray,
    matrix: np.ndarray,
    label: str,
    single_slice_step: float | None = None,
    names: list[str] | None = None,
) -> SliceGeometry:
    """Check one phase's per-frame geometry and build the voxel->LPS affine.

    ``ipp`` (n,3), ``iop`` (n,6), ``spacing`` (n,2) = PixelSpacing (row, column spacing),
    ``matrix`` (n,2) = (Rows, Columns). ``names`` label frames in error messages.
    """
    n = ipp.shape[0]
    names = names or [f"frame {i}" for i in range(n)]
    _check_finite_positive(ipp, iop, spacing, label, names)
    _check_iop(iop[0], label)
    _check_same_plane_grid(iop, spacing, matrix, label, names)
    normal = normal_of(iop[0])
    d = ipp @ normal
    order = np.argsort(d, kind="stable")
    affine = np.eye(4)
    affine[:3, 0] = iop[0, :3] * spacing[0, 1]
    affine[:3, 1] = iop[0, 3:] * spacing[0, 0]
    affine[:3, 3] = ipp[order[0]]
    if n == 1:
        affine[:3, 2] = normal / np.linalg.norm(normal) * (single_slice_step or 1.0)
        return SliceGeometry(order=order, affine=affine)
    _check_slice_gaps(d[order], order, label, names)
    affine[:3, 2] = _slice_step_vector(ipp, order, label)
    if abs(np.linalg.det(affine[:3, :3])) < 1e-9:
        raise IngestError(f"{label}: slices are parallel to the image plane", code="bad-geometry")
    return SliceGeometry(order=order, affine=affine)


def _check_finite_positive(ipp: np.ndarray, iop: np.ndarray, spacing: np.ndarray, label: str,
                           names: list[str]) -> None:
    """Every frame has finite position, orientation and spacing, and the spacing is positive."""
    for arr, what in ((ipp, "ImagePositionPatient"), (iop, "ImageOrientationPatient"),
                      (spacing, "PixelSpacing")):
        bad = ~np.all(np.isfinite(arr), axis=1)
        if bad.any():
            raise IngestError(
                f"{label}: non-finite {what} in {names[int(np.argmax(bad))]}", code="bad-geometry"
            )
    if np.any(spacing <= 0):
        raise IngestError(f"{label}: PixelSpacing must be positive", code="bad-geometry")


def _check_same_plane_grid(iop: np.ndarray, spacing: np.ndarray, matrix: np.ndarray, label: str,
                           names: list[str]) -> None:
    """Orientation, pixel spacing and matrix size agree with the first frame's."""
    for arr, ref, what, tol in (
        (iop, iop[0], "ImageOrientationPatient", IOP_TOL),
        (spacing, spacing[0], "PixelSpacing", SPACING_REL_TOL * float(spacing[0].max())),
        (matrix, matrix[0], "Rows/Columns", 0),
    ):
        diff = np.abs(arr - ref).max(axis=1)
        if np.any(diff > tol):
            i = int(np.argmax(diff > tol))
            raise IngestError(
                f"{label}: {what} differs between slices ({names[0]} vs {names[i]})",
                code="inconsistent-geometry",
            )


def _check_slice_gaps(ds: np.ndarray, order: np.ndarray, label: str, names: list[str]) -> None:
    """Sorted slice positions along the normal (``ds``) are distinct and evenly spaced; gaps of
    a whole number of steps are reported as missing slices."""
    gaps = np.diff(ds)
    dup_tol = 0.01
    dups = np.nonzero(gaps < max(dup_tol, 0.01 * float(np.median(gaps))))[0]
    if dups.size:
        a, b = order[dups[0]], order[dups[0] + 1]
        raise IngestError(
            f"{label}: {dups.size} duplicate slice position(s), e.g. {names[a]} and {names[b]} "
            f"both at {ds[dups[0]]:.3f} mm along the slice normal",
            code="duplicate-slices",
        )
    step = float(np.median(gaps))
    tol = max(0.01 * step, 0.01)
    off = np.abs(gaps - step) > tol
    if not off.any():
        return
    _check_missing_slices(ds, gaps, step, tol, off, label)
    g = int(np.argmax(off))
    raise IngestError(
        f"{label}: non-uniform slice spacing: gap of {gaps[g]:.3f} mm between "
        f"{names[order[g]]} and {names[order[g + 1]]}, median spacing {step:.3f} mm",
        code="nonuniform-spacing",
    )


def _check_missing_slices(ds: np.ndarray, gaps: np.ndarray, step: float, tol: float,
                          off: np.ndarray, label: str) -> None:
    """``missing-slices`` when every irregular gap (``off``) is a whole number (>= 2) of steps."""
    ratio = gaps / step
    near_int = np.abs(ratio - np.round(ratio)) * step <= max(tol, 0.05 * step)
    missing = off & near_int & (np.round(ratio) >= 2)
    if missing.any() and np.all(missing[off]):
        where = [
            f"{int(round(ratio[g])) - 1} between {ds[g]:.2f} mm and {ds[g + 1]:.2f} mm"
            for g in np.nonzero(missing)[0]
        ]
        total = int(sum(round(ratio[g]) - 1 for g in np.nonzero(missing)[0]))
        raise IngestError(
            f"{label}: {total} slice(s) missing (spacing {step:.3f} mm): " + "; ".join(where),
            code="missing-slices",
        )


def _slice_step_vector(ipp: np.ndarray, order: np.ndarray, label: str) -> np.ndarray:
    """LPS step from one slice to the next (first to last over n - 1); the slice positions must
    lie on that straight line."""
    n = ipp.shape[0]
    kvec = (ipp[order[-1]] - ipp[order[0]]) / (n - 1)
    pred = ipp[order[0]] + np.arange(n)[:, None] * kvec
    dev = np.linalg.norm(ipp[order] - pred, axis=1)
    if np.any(dev > max(0.02 * np.linalg.norm(kvec), 0.05)):
        raise IngestError(
            f"{label}: slice positions do not lie on a straight line (deviation up to "
            f"{dev.max():.3f} mm)",
            code="nonuniform-spacing",
        )
    return kvec


# ----------------------------------------------------------------------------- pixels


def _native_dtype(inst: InstanceHeader) -> np.dtype | None:
    if inst.samples_per_pixel != 1 or inst.bits_allocated not in (8, 16, 32):
        return None
    kind = "i" if inst.pixel_representation == 1 else "u"
    return np.dtype(f"<{kind}{inst.bits_allocated // 8}")


def stored_values(arr: np.ndarray, bits_allocated: int, bits_stored: int, high_bit: int | None,
                  signed: bool) -> np.ndarray:
    """The stored values of raw pixel words (in place): bits above HighBit (and below its stored
    bits) dropped, unsigned data masked to BitsStored, signed data sign-extended from its top
    stored bit. Nothing to do when BitsStored == BitsAllocated.

    Scanners write BitsStored 12 / HighBit 11 in 16-bit words and some leave overlay or garbage
    bits above bit 11; read raw, such a pixel is 65535 where pydicom and dcm2niix read <= 4095."""
    if not 0 < bits_stored < bits_allocated:
        return arr
    hb = high_bit if high_bit is not None and bits_stored - 1 <= high_bit < bits_allocated else bits_stored - 1
    low = hb - bits_stored + 1  # the stored bits are hb..low
    if not signed:
        if low:
            np.right_shift(arr, low, out=arr)
        np.bitwise_and(arr, arr.dtype.type((1 << bits_stored) - 1), out=arr)
        return arr
    # signed: shift the stored bits to the top of the word, then arithmetically back down
    words = arr.view(arr.dtype.str.replace("i", "u"))
    np.left_shift(words, bits_allocated - 1 - hb, out=words)
    np.right_shift(arr, bits_allocated - bits_stored, out=arr)
    return arr


def _stored(arr: np.ndarray, inst: InstanceHeader) -> np.ndarray:
    return stored_values(arr, inst.bits_allocated, inst.bits_stored, inst.high_bit,
                         inst.pixel_representation == 1)


def _truncated(path: Path, got: int, expected: int) -> IngestError:
    return IngestError(
        f"{path}: truncated: pixel data {got} bytes, expected {expected}", code="truncated"
    )


def _undecodable(inst: InstanceHeader, exc: Exception) -> IngestError:
    """``undecodable``: the pixel data of ``inst`` could not be decoded, naming its syntax."""
    name = syntax_name(inst.transfer_syntax)
    if not can_decode(inst.transfer_syntax):
        why = "no decoder for this transfer syntax is installed"
    else:
        detail = " ".join(str(exc).split())[:300]
        why = f"{type(exc).__name__}: {detail}"
    return IngestError(f"{inst.path}: pixel data in transfer syntax {name} cannot be decoded ({why})",
                       code="undecodable")


def read_frames(inst: InstanceHeader) -> np.ndarray:
    """All frames of one file as an array (frames, rows, columns), stored values (no rescale):
    bits outside BitsStored masked off, signed values sign-extended."""
    n_px = inst.rows * inst.columns
    dtype = _native_dtype(inst)
    if inst.pixel_value_offset is not None and dtype is not None:
        count = n_px * inst.n_frames
        try:
            arr = np.fromfile(inst.path, dtype=dtype, count=count, offset=inst.pixel_value_offset)
        except (OSError, ValueError) as exc:
            raise IngestError(f"{inst.path}: cannot read pixel data ({exc})", code="truncated") from exc
        if arr.size < count:
            raise _truncated(inst.path, arr.size * dtype.itemsize, count * dtype.itemsize)
        return _stored(arr, inst).reshape(inst.n_frames, inst.rows, inst.columns)
    return _decode_with_pydicom(inst)


def _decode_with_pydicom(inst: InstanceHeader) -> np.ndarray:
    """Compressed, big-endian or deflated pixel data, through pydicom's decoders (which mask
    to BitsStored and sign-extend themselves)."""
    import pydicom

    prefer_fast_plugins()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(inst.path, force=True)
            arr = np.asarray(ds.pixel_array)
    except Exception as exc:
        raise _undecodable(inst, exc) from exc
    try:
        return arr.reshape(inst.n_frames, inst.rows, inst.columns)
    except ValueError as exc:
        raise _undecodable(inst, ValueError(f"decoded to shape {arr.shape}, expected "
                                            f"{inst.n_frames} x {inst.rows} x {inst.columns}")) from exc


_POPULATE_MIN_BYTES = 32 << 20
_WORKERS = max(1, min(4, os.cpu_count() or 1))


def alloc_float32(shape: tuple[int, ...]) -> np.ndarray:
    """An uninitialised float32 array; large ones are pre-faulted (MAP_POPULATE) anonymous
    memory, which is several times faster to fill than first-touch page faults on big volumes."""
    nbytes = int(np.prod(shape)) * 4
    flag = getattr(mmap, "MAP_POPULATE", 0)
    if nbytes >= _POPULATE_MIN_BYTES and flag:
        try:
            buf = mmap.mmap(-1, nbytes, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | flag)
            return np.frombuffer(buf, dtype=np.float32).reshape(shape)
        except (OSError, ValueError, AttributeError):
            pass
    return np.empty(shape, dtype=np.float32)


def build_volume(frames: list[FrameRef], label: str, cache: dict[Path, np.ndarray] | None = None
                 ) -> tuple[Volume, list[str]]:
    """Check geometry, decode pixels and return the phase Volume plus SOP UIDs in k order."""
    geom = phase_geometry(frames, label)
    return decode_volume(frames, geom, cache), [frames[int(i)].sop_uid for i in geom.order]


def phase_geometry(frames: list[FrameRef], label: str) -> SliceGeometry:
    """Check one phase's geometry from its headers (no pixel data read)."""
    missing = [f for f in frames if f.frame.ipp is None or f.frame.iop is None
               or f.frame.pixel_spacing is None]
    if missing:
        f = missing[0]
        what = "multi-frame object" if f.inst.is_multiframe else "file"
        raise IngestError(
            f"{label}: {what} {f.inst.path.name} (SOP {f.sop_uid}) frame {f.frame.index + 1} has "
            "no plane position/orientation/pixel spacing; cannot place it in space",
            code="no-geometry",
        )
    ipp = np.array([f.frame.ipp for f in frames], dtype=float)
    iop = np.array([f.frame.iop for f in frames], dtype=float)
    spacing = np.array([f.frame.pixel_spacing for f in frames], dtype=float)
    matrix = np.array([(f.inst.rows, f.inst.columns) for f in frames], dtype=float)
    names = [f.inst.path.name + (f"#{f.frame.index + 1}" if f.inst.n_frames > 1 else "")
             for f in frames]
    step = frames[0].inst.spacing_between_slices or frames[0].inst.slice_thickness
    return slice_geometry(ipp, iop, spacing, matrix, label, step, names)


def decode_volume(frames: list[FrameRef], geom: SliceGeometry,
                  cache: dict[Path, np.ndarray] | None = None) -> Volume:
    """Decode a phase's pixels (stored values, rescaled) in the slice order of ``geom``."""
    rows, cols = frames[0].inst.rows, frames[0].inst.columns
    out = alloc_float32((len(frames), rows, cols))
    cache = {} if cache is None else cache
    multi = [frames[int(i)] for i in geom.order if frames[int(i)].inst.n_frames > 1]
    for f in multi:  # multi-frame objects: decode each file once (shared across phases)
        if f.inst.path not in cache:
            cache[f.inst.path] = read_frames(f.inst)

    def fill(ks: range) -> None:
        for k in ks:
            f = frames[int(geom.order[k])]
            raw = cache[f.inst.path][f.frame.index] if f.inst.n_frames > 1 else read_frames(f.inst)[0]
            dst = out[k]
            dst[...] = raw
            if f.frame.slope != 1.0:
                dst *= np.float32(f.frame.slope)
            if f.frame.intercept != 0.0:
                dst += np.float32(f.frame.intercept)

    n = len(frames)
    if n >= 32 and _WORKERS > 1:
        # file reads and casts release the GIL: split the slices between threads
        chunks = [range(w * n // _WORKERS, (w + 1) * n // _WORKERS) for w in range(_WORKERS)]
        with ThreadPoolExecutor(max_workers=_WORKERS) as pool:
            for fut in [pool.submit(fill, c) for c in chunks]:
                fut.result()
    else:
        fill(range(n))
    # (k, row, col) C-order -> (col, row, k) view: data[i, j, k] with i = column, j = row
    data = out.transpose(2, 1, 0)
    return Volume(data=data, affine=geom.affine)
