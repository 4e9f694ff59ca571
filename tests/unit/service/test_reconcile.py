import datetime as dt

from followup.service.reconcile import sweep
from followup.service.registry import Registry, utcnow
from followup.service.work_queue import RecordingQueue


def _study(reg, uid):
    reg.record_instance(study_uid=uid, series_uid=uid + ".1", sop_uid=uid + ".1.1",
                        sop_class_uid="1.2.840.10008.5.1.4.1.1.4", path="/x",
                        size=1, patient_id="P", study_date=dt.date(2026, 1, 1), modality="MR",
                        accession_number="", calling_ae="PACS")


def test_sweep_resends_what_the_broker_lost(tmp_path):
    reg = Registry(f"sqlite:///{tmp_path}/r.db")
    for uid in ("1.1", "1.2", "1.3", "1.4"):
        _study(reg, uid)
    assert sorted(reg.claim_stable_studies(0)) == ["1.1", "1.2", "1.3", "1.4"]
    old = utcnow() - dt.timedelta(hours=1)
    reg.set_study("1.1", enqueued_at=old)  # claimed, hand-over lost: no analysis row
    queued = reg.get_or_create_analysis("1.2", "v", 1, "batch")  # queued, message lost
    reg.update_analysis(queued.id, created_at=old)
    running = reg.get_or_create_analysis("1.3", "v", 1, "realtime")  # worker and message gone
    reg.update_analysis(running.id, status="running", started_at=old)
    done = reg.get_or_create_analysis("1.4", "v", 1, "realtime")
    reg.update_analysis(done.id, status="complete", created_at=old)
    fresh = reg.get_or_create_analysis("1.4", "v", 2, "realtime")  # just queued: leave it
    queue = RecordingQueue()  # cannot tell what the broker holds: age alone decides
    res = sweep(reg, queue, older_than_s=600)
    assert queue.studies == ["1.1"] and res.studies_enqueued == ["1.1"]
    assert sorted(queue.analyses) == sorted([(queued.id, "batch"), (running.id, "realtime")])
    assert fresh.id not in res.analyses_resent and done.id not in res.analyses_resent


def test_sweep_leaves_work_whose_message_is_in_the_broker(tmp_path):
    """When the queue tells what the broker holds, only analyses absent from it are re-sent; an
    unreadable broker re-sends nothing; two sweeps enqueue a forgotten stable study once."""
    reg = Registry(f"sqlite:///{tmp_path}/r.db")
    for uid in ("2.1", "2.2", "2.3"):
        _study(reg, uid)
    reg.claim_stable_studies(0)
    old = utcnow() - dt.timedelta(hours=1)
    waiting = reg.get_or_create_analysis("2.1", "v", 1, "batch")  # long queue: still in Redis
    lost = reg.get_or_create_analysis("2.2", "v", 1, "realtime")  # Redis restarted: gone
    for a in (waiting, lost):
        reg.update_analysis(a.id, created_at=old)
    reg.set_study("2.3", enqueued_at=old)  # hand-over lost, no analysis row

    def unreadable() -> set[int]:
        raise ConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    queue = RecordingQueue(in_broker=unreadable)
    res = sweep(reg, queue, older_than_s=600)
    assert res.broker_unreadable and res.analyses_resent == [] and queue.studies == ["2.3"] and queue.analyses == []
    queue.in_broker = lambda: {waiting.id}
    res = sweep(reg, queue, older_than_s=600)
    assert res.analyses_resent == [lost.id] and res.studies_enqueued == []  # 2.3 claimed by the first sweep
    assert queue.studies == ["2.3"] and queue.analyses == [(lost.id, "realtime")]
