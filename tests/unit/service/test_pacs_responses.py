"""Our SCU keeps every DIMSE response for the call that waits for it (``pacs.keep_responses``):
pynetdicom's reactor can take a response off the queue in the instant a ``send_*()`` pauses it,
and then drops it as an "unexpected" message (the delivery times out and is sent twice)."""

from __future__ import annotations

import logging
import time

import pytest
from pynetdicom import AE
from pynetdicom.dimse_primitives import C_ECHO
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]  # generated at import

from followup.service.pacs import keep_responses
from followup.testing.service_harness import free_port


@pytest.fixture
def association():
    scp = AE(ae_title="PACS")
    scp.add_supported_context(Verification)
    port = free_port()
    server = scp.start_server(("127.0.0.1", port), block=False)
    scu = AE(ae_title="FOLLOWUP")
    scu.dimse_timeout = 2
    scu.add_requested_context(Verification)
    assoc = scu.associate("127.0.0.1", port, ae_title="PACS")
    assert assoc.is_established
    try:
        yield assoc
    finally:
        assoc.release()
        server.shutdown()


def _echo_past_the_reactor(assoc) -> C_ECHO:
    """Send a C-ECHO without pausing the reactor (the race, made certain): the reactor, polling
    every millisecond, sees the response before we ask for it."""
    req = C_ECHO()
    req.MessageID = 7
    req.AffectedSOPClassUID = Verification
    assoc.dimse.send_msg(req, assoc.accepted_contexts[0].context_id)
    time.sleep(0.5)
    return assoc.dimse.get_msg(block=True)[1]


def test_a_response_taken_by_the_reactor_is_dropped_without_the_guard(association, caplog):
    """The failure itself, on pynetdicom as installed: without the guard the response is lost."""
    with caplog.at_level(logging.WARNING, logger="pynetdicom"):
        assert _echo_past_the_reactor(association) is None
    assert "Received unexpected C-ECHO service message" in caplog.text


def test_a_response_taken_by_the_reactor_reaches_its_sender(association):
    keep_responses(association)
    rsp = _echo_past_the_reactor(association)
    assert rsp is not None and rsp.MessageIDBeingRespondedTo == 7 and rsp.Status == 0x0000
    # requests are still the reactor's to serve, and a normal exchange still works
    assert association.send_c_echo().Status == 0x0000
