import datetime as dt
import time

from followup.service.reconcile import sweep
from followup.service.registry import Registry, utcnow
from followup.service.work_queue import BrokerMessage, RecordingQueue, TaskKind


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


# --- a worker that died whole: its analysis's lease expired, its message still in `unacked` -----------
def _running(reg, uid, heartbeat_age_s):
    """A running analysis of a new study, started an hour ago, last heartbeat ``heartbeat_age_s`` ago."""
    _study(reg, uid)
    a = reg.get_or_create_analysis(uid, "v", 1, "realtime")
    reg.claim_analysis(a.id, lease_s=60)
    reg.update_analysis(a.id, started_at=utcnow() - dt.timedelta(hours=1),
                        heartbeat_at=utcnow() - dt.timedelta(seconds=heartbeat_age_s))
    return reg.analysis(a.id)


def test_expired_lease_takes_over_the_dead_workers_message_once(tmp_path):
    """A running analysis whose heartbeat is older than the lease lost its worker: its message,
    delivered to that worker long ago and never acknowledged, goes back to its queue at once (not
    after the visibility timeout), whatever the age threshold; once it waits there, later sweeps
    leave it alone. A running analysis with a live lease is never touched, message or not."""
    reg = Registry(f"sqlite:///{tmp_path}/r.db")
    dead = _running(reg, "3.1", heartbeat_age_s=61)
    live = _running(reg, "3.2", heartbeat_age_s=5)
    long_ago = time.time() - 3000
    broker = [BrokerMessage(TaskKind.ANALYZE, dead.id, tag="t-dead", delivered_at=long_ago, due_at=long_ago),
              BrokerMessage(TaskKind.ANALYZE, live.id, tag="t-live", delivered_at=long_ago, due_at=long_ago)]
    queue = RecordingQueue(messages=lambda: broker)
    res = sweep(reg, queue, older_than_s=3600, lease_s=60)
    assert queue.restored == ["t-dead"] and queue.analyses == []  # the same message, no second one
    assert res.analyses_taken_over == [dead.id] and res.analyses_resent == [dead.id]
    # Restored: it now waits in its queue (no worker yet): the next sweeps send nothing more.
    broker[0] = BrokerMessage(TaskKind.ANALYZE, dead.id)
    for _ in range(2):
        res = sweep(reg, queue, older_than_s=3600, lease_s=60)
        assert not res and queue.restored == ["t-dead"] and queue.analyses == []
    # A worker took it a moment ago and has not claimed it yet: still nothing.
    broker[0] = BrokerMessage(TaskKind.ANALYZE, dead.id, tag="t-new", delivered_at=time.time() - 1,
                              due_at=time.time() - 1)
    assert not sweep(reg, queue, older_than_s=3600, lease_s=60)
    # It claimed it: a live lease again (one more attempt).
    assert reg.claim_analysis(dead.id, lease_s=60) and reg.analysis(dead.id).attempts == 2
    broker[0] = BrokerMessage(TaskKind.ANALYZE, dead.id, tag="t-new", delivered_at=long_ago, due_at=long_ago)
    assert not sweep(reg, queue, older_than_s=0, lease_s=60)
    assert queue.restored == ["t-dead"] and queue.analyses == []


def test_expired_lease_without_any_message_is_resent(tmp_path):
    """A pool process killed: its task was put back at once, found the lease still held and was
    acknowledged; or Redis lost it. Nothing in the broker: a new message, once the lease expired."""
    reg = Registry(f"sqlite:///{tmp_path}/r.db")
    gone = _running(reg, "4.1", heartbeat_age_s=90)
    fresh = _running(reg, "4.2", heartbeat_age_s=10)  # lease live: its worker may be alive
    queue = RecordingQueue(messages=lambda: [])
    res = sweep(reg, queue, older_than_s=3600, lease_s=60)
    assert queue.analyses == [(gone.id, "realtime")] and res.analyses_taken_over == [gone.id]
    assert fresh.id not in res.analyses_resent and queue.restored == []


def test_a_retry_waiting_for_its_countdown_is_not_taken_over(tmp_path):
    """An analysis that raised waits in its worker for the retry's countdown (its message
    unacknowledged, due later): the lease has expired, but the worker lives."""
    reg = Registry(f"sqlite:///{tmp_path}/r.db")
    a = _running(reg, "5.1", heartbeat_age_s=70)
    retry = BrokerMessage(TaskKind.ANALYZE, a.id, tag="t", delivered_at=time.time() - 65, due_at=time.time() + 5)
    queue = RecordingQueue(messages=lambda: [retry])
    assert not sweep(reg, queue, older_than_s=3600, lease_s=60)
    assert queue.restored == [] and queue.analyses == []


def test_deliveries_left_untried_by_a_dead_worker_are_resent(tmp_path):
    """A finished analysis with pending deliveries whose retry task died with its worker: its
    message goes back to the queue once the retry is overdue; a retry still counting down, or one
    recently tried, is left alone."""
    reg = Registry(f"sqlite:///{tmp_path}/r.db")
    rows = {}
    for uid in ("6.1", "6.2"):
        _study(reg, uid)
        a = reg.get_or_create_analysis(uid, "v", 1, "realtime")
        reg.finish_analysis(a.id, "complete", None)
        rows[uid] = (a, reg.add_delivery(a.id, "sr", uid + ".9", "/x", "PACS@127.0.0.1:104"))
    (dead, d_dead), (alive, d_alive) = rows["6.1"], rows["6.2"]
    # 6.1: attempt 3 failed 5 min ago (next one due after 10 s): overdue. 6.2: tried 5 s ago.
    reg.update_delivery(d_dead.id, attempts=3, updated_at=utcnow() - dt.timedelta(minutes=5))
    reg.update_delivery(d_alive.id, attempts=3, updated_at=utcnow() - dt.timedelta(seconds=5))
    long_ago = time.time() - 300
    broker = [BrokerMessage(TaskKind.DELIVER, dead.id, tag="d1", delivered_at=long_ago, due_at=long_ago + 10),
              BrokerMessage(TaskKind.DELIVER, alive.id, tag="d2", delivered_at=time.time() - 5,
                            due_at=time.time() + 5)]
    queue = RecordingQueue(messages=lambda: broker)
    res = sweep(reg, queue, older_than_s=3600, lease_s=60)
    assert res.deliveries_resent == [dead.id] and queue.restored == ["d1"] and queue.deliveries == []
    broker[0] = BrokerMessage(TaskKind.DELIVER, dead.id)  # waits for a worker now
    assert not sweep(reg, queue, older_than_s=3600, lease_s=60)
    # No message at all (Redis lost it): a new delivery task.
    broker.clear()
    res = sweep(reg, queue, older_than_s=3600, lease_s=60)
    assert res.deliveries_resent == [dead.id] and queue.deliveries == [(dead.id, "realtime")]
