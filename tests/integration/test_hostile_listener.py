"""A hostile PACS against the listener's wire bounds (issue 22: F1, F4, F8, F12, the called AE title),
over real sockets on 127.0.0.1: raw PDUs crafted here, real pynetdicom associations. Each test
fails on the listener before issue 22 (no bound, no timeout, no per-AE share, no called-AE
check). What each bounds: docs/security/listener.md; the memory and thread figures:
benchmarks/bench_hostile_listener.py."""

from __future__ import annotations

import socket
import struct
import threading
import time
from pathlib import Path

import pytest
from pydicom.encaps import encapsulate
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, RLELossless
from pynetdicom import AE
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]  # made at import

from followup.config import Settings
from followup.service.listener import serve_dicom
from followup.testing.instances import mr, n_instances, quarantined
from followup.testing.service_harness import free_port

OUR_AET, PACS_AET, OTHER_AET = "FOLLOWUP", "PACS", "OTHERPACS"


def scu(calling: str = PACS_AET) -> AE:
    ae = AE(ae_title=calling)
    ae.add_requested_context(MRImageStorage, ExplicitVRLittleEndian)
    ae.add_requested_context(Verification)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = ae.connection_timeout = 20
    return ae


def start(tmp_path, **bounds):
    settings = Settings(data_dir=tmp_path / "data", ae_title=OUR_AET, **bounds)
    port = free_port()
    server = serve_dicom(settings, ae_title=OUR_AET, port=port, allow=[PACS_AET, OTHER_AET],
                         quiet_seconds=3600, on_stable=lambda uid: None, block=False, poll_seconds=0.5)
    return port, server


@pytest.fixture
def listener(tmp_path):
    port, server = start(tmp_path, max_associations=4, pdu_timeout_s=1.0, acse_timeout_s=2.0)
    yield port, server
    server.shutdown()


def associate_rq_head(declared: int, calling: str, called: str = OUR_AET) -> bytes:
    """An A-ASSOCIATE-RQ's PDU header declaring ``declared`` body bytes, and the body's first
    68 bytes (version, called and calling AE titles, reserved)."""
    return (struct.pack(">BBL", 0x01, 0, declared) + struct.pack(">HH", 1, 0)
            + called.ljust(16).encode() + calling.ljust(16).encode() + bytes(32))


def answer(sock: socket.socket, timeout: float) -> bytes | None:
    """What the listener sends back within ``timeout``: b"" when it closed the connection, None
    when it sent nothing and kept it open."""
    sock.settimeout(timeout)
    try:
        return sock.recv(64)
    except ConnectionResetError:
        return b""
    except TimeoutError:
        return None


# --- F1: the association request ---------------------------------------------------------------
@pytest.mark.parametrize("calling, reason", [("INTRUDER", 0x03), (PACS_AET, 0x01)])
def test_huge_association_request_rejected_before_its_body_is_read(listener, calling, reason):
    """A 300 MiB A-ASSOCIATE-RQ (unknown or allowed calling AE): rejected from its first bytes,
    the other 300 MiB never read (before: the listener read them all, then checked the AE)."""
    port, _ = listener
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(associate_rq_head(300 << 20, calling))
        rj = answer(sock, 3.0) or b""
    assert rj[:1] == b"\x03", "no A-ASSOCIATE-RJ before the body was sent"
    assert rj[7:10] == bytes([0x01, 0x01, reason])


def test_association_request_under_the_limit_still_works(listener):
    port, _ = listener
    assoc = scu().associate("127.0.0.1", port, ae_title=OUR_AET)
    assert assoc.is_established
    assert assoc.send_c_echo().Status == 0
    assoc.release()


# --- the called AE title ------------------------------------------------------------------------
def test_association_to_another_called_ae_title_rejected(listener):
    port, _ = listener
    assoc = scu().associate("127.0.0.1", port, ae_title="NOT-US")
    assert assoc.is_rejected and not assoc.is_established
    rj = assoc.acceptor.primitive
    assert (rj.result, rj.result_source, rj.diagnostic) == (0x01, 0x01, 0x07)  # called AE not recognised


# --- F4: partial, dripping and silent peers ---------------------------------------------------------
def _threads_settle(baseline: int, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if threading.active_count() <= baseline:
            break
        time.sleep(0.1)
    return threading.active_count()


def test_partial_pdus_are_dropped_and_their_threads_freed(listener):
    """20 connections each send part of a PDU and then nothing (before: each held its threads
    for as long as the sender liked). With a 1 s PDU timeout all are closed and the listener's
    threads are back to what they were within a few seconds."""
    port, _ = listener
    baseline = threading.active_count()
    socks = []
    for i in range(20):
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(associate_rq_head(200, PACS_AET)[:3 if i % 2 else 20])  # a partial header / body
        socks.append(s)
    try:
        time.sleep(0.5)
        assert threading.active_count() > baseline  # they are being served
        assert _threads_settle(baseline, 6.0) <= baseline
        assert all(answer(s, 0.5) == b"" for s in socks)  # closed by the listener
    finally:
        for s in socks:
            s.close()


def test_dripping_pdu_dropped(listener):
    """One byte every 0.3 s: each byte arrives within any per-read timeout, the PDU never does."""
    port, _ = listener
    head = associate_rq_head(200, PACS_AET)
    with socket.create_connection(("127.0.0.1", port)) as sock:
        started = time.monotonic()
        closed = False
        for b in head:
            try:
                sock.sendall(bytes([b]))
            except OSError:
                closed = True
                break
            time.sleep(0.3)
            if time.monotonic() - started > 4:
                break
        closed = closed or answer(sock, 1.0) == b""
    assert closed and time.monotonic() - started < 6


def test_silent_connection_dropped_after_the_acse_timeout(listener):
    port, _ = listener
    with socket.create_connection(("127.0.0.1", port)) as sock:
        started = time.monotonic()
        assert answer(sock, 5.0) == b""
        assert time.monotonic() - started < 4.5


# --- F8: one sender's share of the association slots --------------------------------------------
def test_one_sender_cannot_take_every_association_slot(listener):
    """4 slots, two allowed senders: PACS gets 2 (its share); the third is rejected, transient,
    and OTHERPACS still gets in (before: PACS's 4 idle associations locked OTHERPACS out)."""
    port, _ = listener
    mine = [scu().associate("127.0.0.1", port, ae_title=OUR_AET) for _ in range(4)]
    try:
        established = [a for a in mine if a.is_established]
        assert len(established) == 2
        rejected = [a for a in mine if a.is_rejected]
        assert len(rejected) == 2
        rj = rejected[0].acceptor.primitive
        assert (rj.result, rj.result_source, rj.diagnostic) == (0x02, 0x03, 0x02)  # transient, local limit
        other = scu(OTHER_AET).associate("127.0.0.1", port, ae_title=OUR_AET)
        assert other.is_established
        assert other.send_c_echo().Status == 0
        other.release()
    finally:
        for a in mine:
            if a.is_established:
                a.release()


def test_the_share_is_all_slots_when_one_sender_is_allowed(tmp_path):
    """A single allowed PACS may use every slot (it sends on parallel lanes; nobody to lock out)."""
    settings = Settings(data_dir=tmp_path / "data", ae_title=OUR_AET, max_associations=3)
    port = free_port()
    server = serve_dicom(settings, ae_title=OUR_AET, port=port, allow=[PACS_AET], quiet_seconds=3600,
                         on_stable=lambda uid: None, block=False)
    try:
        assocs = [scu().associate("127.0.0.1", port, ae_title=OUR_AET) for _ in range(3)]
        assert all(a.is_established for a in assocs)
        for a in assocs:
            a.release()
    finally:
        server.shutdown()


# --- F12: encapsulated pixel data against its header ---------------------------------------------
def rle_image(rows: int, cols: int, bits: int, payload: bytes):
    """An MR image in RLE Lossless whose one fragment is an RLE header of one segment and
    ``payload``, the segment's bytes."""
    ds = mr(rows, cols)
    del ds.PixelData
    ds.BitsAllocated = ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelData = encapsulate([struct.pack("<16I", 1, 64, *([0] * 14)) + payload])
    ds["PixelData"].VR = "OB"
    ds.file_meta.TransferSyntaxUID = RLELossless
    return ds


def test_rle_image_declaring_far_more_than_its_data_refused(listener):
    """A 2 GiB RLE image (32768 x 32768 x 16 bits) with 74 bytes of data: refused 0xC000 and
    quarantined with its reason (before: acknowledged 0x0000 and stored); a consistent RLE image
    (64 x 64, a run of 64 zero bytes a row) is stored."""
    port, server = listener
    ae = AE(ae_title=PACS_AET)
    ae.add_requested_context(MRImageStorage, RLELossless)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 20
    assoc = ae.associate("127.0.0.1", port, ae_title=OUR_AET)
    assert assoc.is_established
    try:
        forged = rle_image(32768, 32768, 16, b"\x81\x00" * 5)
        assert len(forged.PixelData) < 100  # the BOT item, one fragment item: 74 bytes of RLE and 16 of items
        status = assoc.send_c_store(forged)
        assert status.Status == 0xC000
        good = rle_image(64, 64, 8, b"\xc1\x00" * 64)  # -63: 64 copies of 0x00, once a row
        assert assoc.send_c_store(good).Status == 0
    finally:
        assoc.release()
    ((info, _),) = quarantined(server.store)
    assert info["reason"].startswith("RLE pixel data of") and "2147483648 bytes" in info["reason"]
    assert n_instances(server.registry) == 1


# --- F13: a duplicate SOP Instance UID with other content ---------------------------------------
def test_duplicate_sop_uid_with_other_content_quarantined_first_copy_kept(listener):
    """The same instance again is a duplicate (success); other content under its SOP Instance
    UID is refused 0xC000 and quarantined with its reason, the first copy kept (before: answered
    0x0000 and dropped with a warning)."""
    port, server = listener
    ds = mr()
    assoc = scu().associate("127.0.0.1", port, ae_title=OUR_AET)
    assert assoc.is_established
    try:
        assert assoc.send_c_store(ds).Status == 0
        stored = server.registry.instance_path(str(ds.SOPInstanceUID))
        first = Path(stored).read_bytes()
        assert assoc.send_c_store(ds).Status == 0
        ds.PixelData = b"\x07" * len(ds.PixelData)
        assert assoc.send_c_store(ds).Status == 0xC000
    finally:
        assoc.release()
    assert Path(stored).read_bytes() == first
    ((info, size),) = quarantined(server.store)
    assert "duplicate SOP Instance UID" in info["reason"] and size > len(ds.PixelData)
    assert n_instances(server.registry) == 1
