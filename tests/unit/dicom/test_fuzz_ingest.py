"""Property-based fuzzing of DICOM ingestion and of the listener's C-STORE handler.

Properties:

* ``scan_directory`` on a folder holding a (byte- or attribute-) mutated file next to a valid
  small dynamic raises nothing but ``IngestError`` (a bad file becomes a rejected entry);
* ``load_dce_study`` raises nothing but ``IngestError``, or returns a study whose phases have
  finite affines; it never hangs and never allocates memory for absurd header dimensions;
* ``StoreHandler.handle`` never raises; its outcome is one of stored/duplicate/refused/failed;
  refused input is quarantined (``.dcm`` + ``.json`` reason); a stored instance lies inside the
  store under a valid UID name.

The study is written once per module; every example copies its bytes into a fresh folder.
``derandomize=True`` keeps CI reproducible.
"""

from __future__ import annotations

import contextlib
import json
import resource
import signal
import tempfile
import time
from io import BytesIO
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, example, given, settings, strategies as st
from pydicom import dcmread
from pydicom.uid import generate_uid

from followup.dicom import load_dce_study, scan_directory
from followup.dicom.header_records import ScanResult
from followup.errors import IngestError
from followup.service.listener import StoreHandler
from followup.service.registry import Instance, Registry
from followup.service.store import Store, valid_uid
from followup.testing.dicom_factory import Geometry, write_dynamic

pytestmark = pytest.mark.filterwarnings("ignore:Invalid value for VR")

MR = "1.2.840.10008.5.1.4.1.1.4"
HANG_SECONDS = 10  # a single call taking longer than this is a hang
FUZZ = {"deadline": None, "derandomize": True, "database": None,
        "suppress_health_check": [HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                  HealthCheck.data_too_large]}


# ----------------------------------------------------------------------------- helpers


class Hang(BaseException):
    """Raised by the alarm when a call runs past HANG_SECONDS: a BaseException, so that the
    product's ``except Exception`` (e.g. the per-file guard of the scan) cannot swallow it."""


@contextlib.contextmanager
def no_hang(seconds: float = HANG_SECONDS):
    def _alarm(signum, frame):
        raise Hang(f"call did not return within {seconds} s")

    old = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def _maxrss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB


class Study:
    """A valid small dynamic (3 phases x 5 slices of 8 x 10) kept as bytes."""

    def __init__(self, root: Path) -> None:
        w = write_dynamic(root / "study", geom=Geometry(rows=8, cols=10, n_slices=5), n_phases=3,
                          seed=3)
        self.root = root / "study"
        self.files: dict[str, bytes] = {}
        self.pixel_offset: dict[str, int] = {}
        for p in sorted(self.root.rglob("*")):
            if p.is_file():
                rel = str(p.relative_to(self.root))
                self.files[rel] = p.read_bytes()
        scan = scan_directory(self.root)
        for inst in scan.instances:
            self.pixel_offset[str(inst.path.relative_to(self.root))] = inst.pixel_value_offset
        self.names = sorted(self.files)
        self.phase_of = {str(f.relative_to(self.root)): p
                         for p, phase in enumerate(w.files) for f in phase}
        assert len(self.names) == 15 and len(self.pixel_offset) == 15

    def write(self, dest: Path, replaced: dict[str, bytes]) -> Path:
        for rel, data in self.files.items():
            p = dest / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(replaced.get(rel, data))
        return dest


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Study:
    s = Study(tmp_path_factory.mktemp("fuzz-study"))
    loaded = load_dce_study(s.root)  # the unmutated study is valid
    assert len(loaded.phases) == 3
    return s


def check_ingest(folder: Path, hang_s: float = HANG_SECONDS) -> None:
    """The ingestion properties on one folder."""
    try:
        _check_ingest(folder, hang_s)
    except Hang as exc:  # report as a test failure (Hypothesis then prints the example)
        raise AssertionError(f"ingestion hung: {exc}") from exc


def _check_ingest(folder: Path, hang_s: float) -> None:
    with no_hang(hang_s):
        try:
            scan = scan_directory(folder)
        except IngestError as exc:
            assert isinstance(exc.code, str) and exc.code
            scan = None
    if scan is not None:
        assert isinstance(scan, ScanResult)
        assert len(scan.instances) + len(scan.rejected) == scan.n_files
    with no_hang(hang_s):
        try:
            loaded = load_dce_study(folder)
        except IngestError as exc:
            assert isinstance(exc.code, str) and exc.code
            return
    assert loaded.phases
    for ph in loaded.phases:
        aff = np.asarray(ph.volume.affine, dtype=float)
        assert aff.shape == (4, 4) and np.isfinite(aff).all(), aff
        # an unknown acquisition time is NaN and always said in a warning, never a made-up number
        assert np.isfinite(ph.time_s) or any("times unknown" in w for w in loaded.warnings)


# ----------------------------------------------------------------------------- 1. byte level

INTERESTING = [b"\xff\xff\xff\xff", b"\x00\x00\x00\x00", b"\xff\xff", b"\x00\x00",
               b"\xfe\xff\x00\xe0", b"\xfe\xff\xdd\xe0", b"SQ", b"UN", b"OB", b"UT",
               b"\xe0\x7f\x10\x00", b"\x7f\xff\xff\xff", b"NaN", b"-1\\1e308"]

_pos = st.integers(min_value=0, max_value=2**20)
byte_op = st.one_of(
    st.tuples(st.just("flip"), _pos, st.integers(1, 255)),
    st.tuples(st.just("overwrite"), _pos,
              st.one_of(st.binary(min_size=1, max_size=16), st.sampled_from(INTERESTING))),
    st.tuples(st.just("truncate"), _pos),
    st.tuples(st.just("append"), st.binary(min_size=1, max_size=64)),
    st.tuples(st.just("insert"), _pos,
              st.one_of(st.binary(min_size=1, max_size=16), st.sampled_from(INTERESTING))),
)


def apply_byte_ops(data: bytes, header_end: int, ops: list[tuple]) -> bytes:
    """Header-region flips/overwrites/inserts, truncation anywhere, junk appended."""
    buf = bytearray(data)
    for op in ops:
        kind = op[0]
        hdr = max(1, min(header_end, len(buf)))
        if kind == "flip" and buf:
            i = op[1] % hdr
            buf[i] ^= op[2]
        elif kind == "overwrite" and buf:
            i = op[1] % hdr
            buf[i:i + len(op[2])] = op[2]
        elif kind == "truncate":
            del buf[op[1] % (len(buf) + 1):]
        elif kind == "append":
            buf += op[1]
        elif kind == "insert":
            i = op[1] % (hdr + 1)
            buf[i:i] = op[2]
    return bytes(buf)


@settings(max_examples=150, **FUZZ)
@given(target=st.integers(0, 14), ops=st.lists(byte_op, min_size=1, max_size=4))
def test_byte_mutations_never_escape(study: Study, target: int, ops: list[tuple]) -> None:
    rel = study.names[target]
    mutated = apply_byte_ops(study.files[rel], study.pixel_offset[rel], ops)
    with tempfile.TemporaryDirectory() as tmp:
        check_ingest(study.write(Path(tmp) / "in", {rel: mutated}))


# ----------------------------------------------------------------------------- 2. attribute level

GEOMETRY_TAGS = ["ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing", "Rows",
                 "Columns", "SliceThickness", "PixelData"]
BAD_FLOATS = ["NaN", "inf", "-inf", "1e308", "-1e308", "1e30", "nan"]

attr_mutation = st.one_of(
    st.tuples(st.just("delete"), st.sampled_from(GEOMETRY_TAGS)),
    st.tuples(st.just("ipp"), st.lists(st.sampled_from([*BAD_FLOATS, "0", "12.5"]),
                                       min_size=3, max_size=3)),
    st.tuples(st.just("dims"), st.sampled_from([0, 1, 65535]), st.sampled_from([0, 1, 65535])),
    st.tuples(st.just("frames"), st.sampled_from(["0", "-1", "2", "65535", "2147483647",
                                                  "99999999999"])),
    st.tuples(st.just("spacing"), st.sampled_from([("0", "0"), ("0", "1"), ("-1", "-1"),
                                                   ("-0.5", "1.5"), ("NaN", "1"), ("inf", "1")])),
    st.tuples(st.just("sop"), st.sampled_from(["1.2/3", "../../etc/passwd", "1.2..3", "..",
                                               "1." * 100, "9" * 200, ""])),
    st.tuples(st.just("bits"), st.sampled_from([0, 1, 7, 12, 15, 17, 24, 33, 64, 255])),
    st.tuples(st.just("patient"), st.sampled_from(["OTHER-1", "", "SECRETID-988"])),
)

# a mutation on one file, on every file of one phase, or on every file of the study
SCOPES = ["file", "phase", "all"]


def apply_attr(data: bytes, mut: tuple) -> bytes:
    ds = dcmread(BytesIO(data))
    kind = mut[0]
    if kind == "delete":
        if mut[1] in ds:
            delattr(ds, mut[1])
    elif kind == "ipp":
        ds.ImagePositionPatient = list(mut[1])
    elif kind == "dims":  # pixel data left as it is: short for the declared matrix
        ds.Rows, ds.Columns = mut[1], mut[2]
    elif kind == "frames":
        ds.NumberOfFrames = mut[1]
    elif kind == "spacing":
        ds.PixelSpacing = list(mut[1])
    elif kind == "sop":
        ds.SOPInstanceUID = mut[1]
    elif kind == "bits":
        ds.BitsAllocated = mut[1]
    elif kind == "patient":
        ds.PatientID = mut[1]
    out = BytesIO()
    ds.save_as(out, enforce_file_format=False)
    return out.getvalue()


@settings(max_examples=150, **FUZZ)
@given(target=st.integers(0, 14), scope=st.sampled_from(SCOPES), mut=attr_mutation)
def test_attribute_mutations_never_escape(study: Study, target: int, scope: str,
                                          mut: tuple) -> None:
    rel = study.names[target]
    if scope == "file":
        chosen = [rel]
    elif scope == "phase":
        chosen = [n for n in study.names if study.phase_of[n] == study.phase_of[rel]]
    else:
        chosen = list(study.names)
    replaced = {n: apply_attr(study.files[n], mut) for n in chosen}
    with tempfile.TemporaryDirectory() as tmp:
        check_ingest(study.write(Path(tmp) / "in", replaced))


@settings(max_examples=40, phases=[Phase.explicit, Phase.reuse, Phase.generate], **FUZZ)
@given(rows=st.sampled_from([0, 1, 65535]), cols=st.sampled_from([0, 1, 65535]),
       frames=st.sampled_from([None, "1", "2", "65535", "2147483647"]),
       bits=st.sampled_from([8, 16, 32]), scope=st.sampled_from(SCOPES))
@example(rows=0, cols=0, frames="2147483647", bits=16, scope="file")  # one header-only file
def test_absurd_dimensions_do_not_allocate(study: Study, rows: int, cols: int, frames: str | None,
                                           bits: int, scope: str) -> None:
    """A header declaring a huge matrix (65535 x 65535, billions of frames) over a few bytes of
    pixel data must be refused from the header: quickly and without allocating for it."""
    if scope == "file":
        chosen = study.names[:1]
    elif scope == "phase":
        chosen = [n for n in study.names if study.phase_of[n] == 0]
    else:
        chosen = list(study.names)
    replaced = {}
    for n in chosen:
        ds = dcmread(BytesIO(study.files[n]))
        ds.Rows, ds.Columns, ds.BitsAllocated = rows, cols, bits
        ds.BitsStored, ds.HighBit = bits, bits - 1
        if frames is not None:
            ds.NumberOfFrames = frames
        out = BytesIO()
        ds.save_as(out, enforce_file_format=False)
        replaced[n] = out.getvalue()
    with tempfile.TemporaryDirectory() as tmp:
        folder = study.write(Path(tmp) / "in", replaced)
        before = _maxrss_bytes()
        t0 = time.monotonic()
        check_ingest(folder, hang_s=5.0)
        elapsed = time.monotonic() - t0
        grown = _maxrss_bytes() - before
    assert elapsed < 5.0, f"ingestion took {elapsed:.1f} s for an absurd header"
    assert grown < 256 << 20, f"peak memory grew by {grown >> 20} MiB for an absurd header"


# ----------------------------------------------------------------------------- 3. listener


@pytest.fixture(scope="module")
def handler_env(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fuzz-listener")
    store = Store(tmp / "data")
    registry = Registry(f"sqlite:///{tmp}/r.db")
    return store, registry, StoreHandler(store, registry)


def _header_uids(data: bytes) -> tuple[str, str]:
    try:
        ds = dcmread(BytesIO(data), stop_before_pixels=True)
        return str(ds.get("SOPClassUID", "")), str(ds.get("SOPInstanceUID", ""))
    except Exception:  # noqa: BLE001 - unparsable fuzz input: the request UIDs stay empty
        return "", ""


uid_text = st.one_of(
    st.just(""),
    st.text(max_size=80),
    st.from_regex(r"\A[0-9.]{1,70}\Z"),
    st.sampled_from(["1.2.3", "../../x", "1.2/3", "1..2", "0" * 65, MR]),
)


@st.composite
def received(draw, files: list[bytes], offsets: list[int]):
    """(data, req_sop_class, req_sop_uid): random bytes, or a (mutated) valid file whose request
    UIDs mostly match its header."""
    kind = draw(st.sampled_from(["random", "valid", "byte-mutated", "attr-mutated"]))
    if kind == "random":
        data = draw(st.binary(max_size=2048))
        return data, draw(uid_text), draw(uid_text)
    i = draw(st.integers(0, len(files) - 1))
    data = files[i]
    if kind == "byte-mutated":
        data = apply_byte_ops(data, offsets[i], draw(st.lists(byte_op, min_size=1, max_size=3)))
    elif kind == "attr-mutated":
        data = apply_attr(data, draw(attr_mutation))
    elif draw(st.booleans()):  # a fresh SOP instance: "stored" rather than "duplicate"
        ds = dcmread(BytesIO(data))
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        out = BytesIO()
        ds.save_as(out, enforce_file_format=True)
        data = out.getvalue()
    cls, sop = _header_uids(data)
    if draw(st.integers(0, 4)) == 0:  # sometimes the request disagrees with the data set
        cls, sop = draw(uid_text), draw(uid_text)
    return data, cls, sop


@settings(max_examples=200, **FUZZ)
@given(data=st.data(), calling_ae=st.one_of(st.just("PACS"), st.text(max_size=20)))
def test_store_handler_never_raises(study: Study, handler_env, data, calling_ae: str) -> None:
    store, registry, handler = handler_env
    files = [study.files[n] for n in study.names]
    offsets = [study.pixel_offset[n] for n in study.names]
    payload, req_cls, req_sop = data.draw(received(files, offsets))
    before = set(store.quarantine_dir.iterdir())
    with no_hang():
        status, outcome = handler.handle(payload, req_cls, req_sop, calling_ae)
    assert outcome in ("stored", "duplicate", "refused", "failed")
    assert "Status" in status
    new = set(store.quarantine_dir.iterdir()) - before
    for kept in (p for p in new if p.suffix == ".dcm"):  # whatever is quarantined keeps its reason
        assert kept.with_suffix(".json") in new and json.loads(kept.with_suffix(".json").read_text())["reason"]
    if outcome == "refused":
        assert status.Status != 0
        dcms = [p for p in new if p.suffix == ".dcm"]
        jsons = [p for p in new if p.suffix == ".json"]
        assert len(dcms) == 1 and len(jsons) == 1, sorted(p.name for p in new)
        assert dcms[0].with_suffix(".json") == jsons[0]
        assert dcms[0].read_bytes() == payload
        assert json.loads(jsons[0].read_text())["reason"]
    elif outcome in ("stored", "duplicate"):
        # an acknowledged instance is never in the quarantine; the study-patient rule may move the
        # study's earlier instances there (another patient's: issue 22, F2)
        assert all(p.read_bytes() != payload for p in new if p.suffix == ".dcm"), \
            "an acknowledged instance went to the quarantine"
    if outcome in ("stored", "duplicate"):
        assert status.Status == 0
        assert valid_uid(req_sop)
        with registry.session() as s:
            inst = s.get(Instance, req_sop)
            assert inst is not None
            path = Path(inst.path)
        root = store.instances.resolve()
        assert path.resolve().is_relative_to(root)
        assert path.resolve().relative_to(root).parts.__len__() == 3
        assert path.suffix == ".dcm" and valid_uid(path.stem)
        if outcome == "stored":
            assert path.stem == req_sop
            assert path.read_bytes() == payload
    # nothing is left behind in the spool
    assert not any(store.spool.iterdir())
