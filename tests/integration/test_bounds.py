"""Resource bounds of the listener, all configurable (Settings, FOLLOWUP_MAX_* variables,
serve-dicom options): maximum instance size, maximum instances per study, maximum concurrent
associations. Wire level, through real pynetdicom associations and a real ``followup
serve-dicom`` process; the unit level (``StoreHandler.handle``) is
tests/unit/service/listener/test_bounds.py."""

from __future__ import annotations

import os
import subprocess

import pytest
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid
from pynetdicom import AE

from followup.config import Settings
from followup.service.listener import (
    INSTANCE_TOO_LARGE,
    QUARANTINE_KEEP_BYTES,
    STUDY_TOO_LARGE,
    serve_dicom,
)
from followup.testing.instances import encode, mr, n_instances, quarantined
from followup.testing.service_harness import FOLLOWUP, free_port, process, wait_for, wait_port

OUR_AET, PACS_AET = "FOLLOWUP", "PACS"


def scu(calling: str = PACS_AET) -> AE:
    ae = AE(ae_title=calling)
    ae.add_requested_context(MRImageStorage, ExplicitVRLittleEndian)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = ae.connection_timeout = 20
    return ae


@pytest.fixture
def bounded(tmp_path):
    settings = Settings(data_dir=tmp_path / "data", max_instance_bytes=200_000, max_study_instances=4,
                        max_associations=2)
    port = free_port()
    server = serve_dicom(settings, ae_title=OUR_AET, port=port, allow=[PACS_AET], quiet_seconds=3600,
                         on_stable=lambda uid: None, block=False, poll_seconds=0.5)
    yield port, server
    server.shutdown()


def test_oversized_instance_over_the_wire(bounded):
    """A 1 MiB instance against a 200 kB limit: 0xA701, its bytes beyond the limit never held,
    the association still usable."""
    port, server = bounded
    handler = server.store_handler
    seen: list[int] = []
    real_handle = handler.handle

    def spy(data, *args, **kw):  # observes what reached the handler; the real code runs
        seen.append(len(data))
        return real_handle(data, *args, **kw)

    handler.handle = spy
    big = mr(1024, 512)
    sent = len(encode(big))
    assoc = scu().associate("127.0.0.1", port, ae_title=OUR_AET)
    assert assoc.is_established
    try:
        assert assoc.send_c_store(big).Status == INSTANCE_TOO_LARGE
        assert assoc.send_c_store(mr()).Status == 0  # the next message is counted afresh
    finally:
        assoc.release()
    assert seen[0] < 200_000 + 1024 < sent, "the guard should have dropped the excess"
    ((info, kept),) = quarantined(server.store)
    assert info["status"] == "0xA701" and int(info["received_bytes"]) >= sent - 1024
    assert kept <= QUARANTINE_KEEP_BYTES
    assert n_instances(server.registry) == 1


def test_association_beyond_the_limit_is_rejected(bounded):
    port, server = bounded
    open_ = [scu().associate("127.0.0.1", port, ae_title=OUR_AET) for _ in range(2)]
    try:
        assert all(a.is_established for a in open_)
        third = scu().associate("127.0.0.1", port, ae_title=OUR_AET)
        assert third.is_rejected and not third.is_established
        rj = third.acceptor.primitive
        assert (rj.result, rj.result_source, rj.diagnostic) == (0x02, 0x03, 0x02)  # transient, local limit
        assert open_[0].send_c_store(mr()).Status == 0  # the open ones carry on
    finally:
        open_[0].release()
    try:  # one slot free again: a new association is accepted
        def accepted():
            a = scu().associate("127.0.0.1", port, ae_title=OUR_AET)
            if a.is_established:
                return a
            return None
        again = wait_for(accepted, 20, "a free association slot", interval=0.3)
        assert again.send_c_store(mr()).Status == 0
        again.release()
    finally:
        open_[1].release()
    assert n_instances(server.registry) == 2


def test_serve_dicom_command_line_options(tmp_path):
    """The bounds given as serve-dicom options reach the running listener."""
    port = free_port()
    env = dict(os.environ, FOLLOWUP_DATA_DIR=str(tmp_path / "data"),
               FOLLOWUP_REDIS_URL="redis://127.0.0.1:1/0",  # never reached: nothing gets stable
               FOLLOWUP_RECONCILE_SECONDS="0")
    cmd = [FOLLOWUP, "serve-dicom", "--port", str(port), "--host", "127.0.0.1", "--allow", PACS_AET,
           "--quiet-seconds", "3600", "--max-associations", "1", "--max-instance-bytes", "50000",
           "--max-study-instances", "1"]
    with process(cmd, tmp_path / "listener.log", env):
        wait_port(port, timeout=60)
        held = scu().associate("127.0.0.1", port, ae_title=OUR_AET)
        assert held.is_established
        try:
            assert scu().associate("127.0.0.1", port, ae_title=OUR_AET).is_rejected
            study = generate_uid()
            assert held.send_c_store(mr(256, 256, study_uid=study)).Status == INSTANCE_TOO_LARGE
            assert held.send_c_store(mr(study_uid=study)).Status == 0
            assert held.send_c_store(mr(study_uid=study)).Status == STUDY_TOO_LARGE
        finally:
            held.release()
    log = (tmp_path / "listener.log").read_text()
    assert "at most 1 associations, 50000 bytes an instance, 1 instances a study" in log
    bad = subprocess.run([*cmd[:2], "--port", str(port), "--allow", PACS_AET, "--max-associations", "0"],
                         check=False, capture_output=True, text=True, env=env, timeout=60)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
