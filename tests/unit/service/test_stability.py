"""The stability monitor: a study is handed over once, after its quiet period, by exactly one of
several monitors; a failed hand-over puts it back."""

from __future__ import annotations

import threading
import time
from collections import Counter

from pydicom.uid import MRImageStorage, generate_uid

from followup.service.registry import Registry
from followup.service.stability import StabilityMonitor

PACS_AET = "PACS"


def add_instances(reg: Registry, study_uid: str, n: int = 3) -> None:
    series = generate_uid()
    for _ in range(n):
        sop = generate_uid()
        reg.record_instance(study_uid=study_uid, series_uid=series, sop_uid=sop,
                            sop_class_uid=MRImageStorage, path=f"/x/{sop}.dcm", size=1,
                            patient_id="P", study_date=None, modality="MR", accession_number="",
                            calling_ae=PACS_AET)


def test_two_monitors_hand_over_each_study_exactly_once(tmp_path):
    url = f"sqlite:///{tmp_path / 'reg.db'}"
    reg = Registry(url)
    studies = [generate_uid() for _ in range(4)]
    for uid in studies:
        add_instances(reg, uid)
    calls: Counter = Counter()
    lock = threading.Lock()

    def on_stable(uid: str) -> None:
        with lock:
            calls[uid] += 1

    monitors = [StabilityMonitor(Registry(url), 1.0, on_stable, poll_seconds=0.02) for _ in range(2)]
    for m in monitors:
        m.start()
    try:
        deadline = time.monotonic() + 10
        while sum(calls.values()) < len(studies) and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)
    finally:
        for m in monitors:
            m.stop()
    assert calls == Counter({uid: 1 for uid in studies})
    assert all(reg.study(uid).state == "stable" for uid in studies)
    assert sum(m.handed_over for m in monitors) == len(studies)


def test_not_stable_before_quiet_period(tmp_path):
    reg = Registry(f"sqlite:///{tmp_path / 'reg.db'}")
    uid = generate_uid()
    add_instances(reg, uid)
    calls = []
    mon = StabilityMonitor(reg, 30.0, calls.append)
    assert mon.run_once() == [] and calls == []
    assert reg.study(uid).state == "receiving"


def test_failed_hand_over_puts_study_back(tmp_path, caplog):
    reg = Registry(f"sqlite:///{tmp_path / 'reg.db'}")
    uid = generate_uid()
    add_instances(reg, uid)
    time.sleep(1.1)

    def redis_down(study_uid: str) -> None:
        raise ConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    mon = StabilityMonitor(reg, 1.0, redis_down)
    assert mon.run_once() == []
    assert reg.study(uid).state == "receiving" and mon.failed == 1
    assert "ConnectionError" in caplog.text and uid in caplog.text

    calls = []
    mon2 = StabilityMonitor(reg, 1.0, calls.append)
    assert mon2.run_once() == [uid] and calls == [uid]
    assert reg.study(uid).state == "stable"
    assert mon2.run_once() == [] and calls == [uid]
