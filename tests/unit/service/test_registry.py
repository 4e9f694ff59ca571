"""The registry on SQLite and, where a server is reachable, PostgreSQL (the ``registry`` fixture in
tests/unit/conftest.py; its PostgreSQL case is marked ``integration``)."""

from __future__ import annotations

import datetime as dt


def _instance(reg, sop, study="1.2.3", sop_class="1.2.840.10008.5.1.4.1.1.4"):
    return reg.record_instance(study_uid=study, series_uid="1.2.3.4", sop_uid=sop, sop_class_uid=sop_class,
                               path=f"/x/{sop}", size=10, patient_id="P1", study_date=dt.date(2026, 3, 1),
                               modality="MR", accession_number="A1", calling_ae="PACS")


def test_duplicates_stability_and_revisions(registry):
    assert _instance(registry, "1.2.3.4.1") is True
    assert _instance(registry, "1.2.3.4.1") is False  # same SOP Instance UID: a duplicate
    assert _instance(registry, "1.2.3.4.2") is True
    assert registry.study("1.2.3").n_instances == 2
    assert registry.claim_stable_studies(3600) == []  # not quiet long enough
    assert registry.claim_stable_studies(0) == ["1.2.3"]
    assert registry.claim_stable_studies(0) == []  # claimed once, never twice
    _instance(registry, "1.2.3.4.3")  # the study changed: receiving again
    assert registry.study("1.2.3").state == "receiving"
    a1 = registry.get_or_create_analysis("1.2.3", "0.1.0", 1, "realtime")
    assert registry.get_or_create_analysis("1.2.3", "0.1.0", 1, "realtime").id == a1.id
    assert registry.next_revision("1.2.3", "0.1.0") == 2
    d1 = registry.add_delivery(a1.id, "sr", "1.2.9", "/r/sr.dcm", "PACS@h:1")
    assert registry.add_delivery(a1.id, "sr", "1.2.9", "/r/sr.dcm", "PACS@h:1").id == d1.id
    registry.put_setting("destination", "PACS@h:1")
    assert registry.get_setting("destination") == "PACS@h:1"


def test_our_objects_routed_back_do_not_reopen_a_study(registry):
    """A PACS forwarding whole studies sends our SR/SEG/PDF back: no new analysis, no loop."""
    _instance(registry, "1.2.3.4.1")
    assert registry.claim_stable_studies(0) == ["1.2.3"]
    registry.set_study("1.2.3", state="complete")
    for sop, cls in (("1.2.3.9.1", "1.2.840.10008.5.1.4.1.1.88.34"), ("1.2.3.9.2", "1.2.840.10008.5.1.4.1.1.66.4"),
                     ("1.2.3.9.3", "1.2.840.10008.5.1.4.1.1.104.1")):
        assert _instance(registry, sop, sop_class=cls) is True
    assert registry.study("1.2.3").state == "complete" and registry.study("1.2.3").n_instances == 4
    assert registry.claim_stable_studies(0) == []
    _instance(registry, "2.1", study="2.9", sop_class="1.2.840.10008.5.1.4.1.1.88.34")  # an SR alone
    assert registry.study("2.9").state == "objects-only" and registry.claim_stable_studies(0) == []
