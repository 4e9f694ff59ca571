"""Service benchmark with real processes: redis-server, the listener, one Celery worker on both
queues, dcmtk storescu sending and storescp receiving (TCP_NODELAY=1).

Measures, in the same run:
* latency: last instance acknowledged by the listener -> SR received by the PACS, for small
  studies and one full-size study (quiet period included, reported separately);
* throughput of one worker: studies/hour from the analyses' own durations;
* fairness: 50 batch reanalyses queued, then one new study arrives: how long it waits for the
  worker, against the mean duration of one batch task.

Usage: .venv/bin/python benchmarks/bench_service.py [--small 3] [--no-full] [--batch 50]
Writes benchmarks/results/service.md and prints it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import pydicom

from followup.service.registry import Registry
from followup.synth import generate_pair
from followup.testing import service_harness as harness
from followup.testing.bench import write_results
from followup.testing.service_harness import FOLLOWUP, free_port, process

HERE = Path(__file__).resolve().parent

QUIET_S = 2.0
CACHE = Path(os.environ.get("FOLLOWUP_BENCH_CACHE", "/tmp/followup-bench"))


def sr_time(received: Path, study_uid: str) -> float | None:
    for f in received.rglob("*"):
        if f.is_file():
            ds = pydicom.dcmread(f, stop_before_pixels=True)
            if ds.SOPClassUID == pydicom.uid.Comprehensive3DSRStorage and ds.StudyInstanceUID == study_uid:
                return f.stat().st_mtime
    return None


def send_and_time(pair: Path, port: int, received: Path, reg: Registry, timeout: float) -> dict:
    truth = json.loads((pair / "truth.json").read_text())
    fu = truth["studies"]["followup"]["study_uid"]
    t0 = time.time()
    harness.storescu(pair / "followup", port)
    last_ack = time.time()
    harness.wait_for(lambda: sr_time(received, fu), timeout, f"SR of {fu}")
    arrived = sr_time(received, fu)
    assert arrived is not None  # wait_for returned: the SR is there
    a = reg.latest_analysis(fu)
    return {"study": fu, "send_s": last_ack - t0, "latency_s": arrived - last_ack,
            "analysis_s": a.duration_s if a else None, "status": a.status if a else None}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--small", type=int, default=3)
    ap.add_argument("--full", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--batch", type=int, default=50)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="followup-bench-service-"))
    pairs = []
    for i in range(args.small + 1):
        p = CACHE / f"small-service-{i}"
        if not (p / "truth.json").exists():
            generate_pair(p, "complete" if i % 2 else "residual", 2000 + i, "per-phase", "small")
        pairs.append(p)
    full = CACHE / "full-residual-5-single-series"
    if args.full and not (full / "truth.json").exists():
        generate_pair(full, "residual", 5, "single-series", "full")
    rows: dict[str, list[dict]] = {"small": [], "full": []}
    fairness = {}
    with harness.redis_server(tmp) as redis_url, harness.storescp(tmp) as (pacs_port, received):
        env = dict(os.environ, FOLLOWUP_DATA_DIR=str(tmp / "data"), FOLLOWUP_REDIS_URL=redis_url)
        env.pop("FOLLOWUP_DB_URL", None)
        port = free_port()
        with process([FOLLOWUP, "serve-dicom", "--port", str(port), "--host", "127.0.0.1", "--allow", "PACS",
                      "--destination", f"PACS@127.0.0.1:{pacs_port}", "--quiet-seconds", str(QUIET_S)],
                     tmp / "listener.log", env), \
             process([FOLLOWUP, "worker", "--queues", "realtime,batch"], tmp / "worker.log", env):
            harness.wait_port(port)
            reg = Registry(f"sqlite:///{(tmp / 'data' / 'followup.db').resolve()}")
            todo = pairs[:args.small] + ([full] if args.full else [])
            for p in todo:
                subprocess.run([FOLLOWUP, "procedures", "add", str(p / "procedure.json")], env=env, check=True,
                               capture_output=True)
                harness.storescu(p / "baseline", port)
            time.sleep(QUIET_S + 3)
            for p in todo:
                kind = "full" if p == full else "small"
                rows[kind].append(send_and_time(p, port, received, reg, 600 if kind == "full" else 180))
                print(kind, rows[kind][-1], flush=True)
            # Fairness: a batch of N reanalyses, then one new arrival.
            if args.batch:
                from followup.config import Settings
                from followup.service.batch import start_reanalysis
                from workers.tasks import celery_queue

                settings = Settings.from_env(data_dir=tmp / "data", redis_url=redis_url)
                queue = celery_queue(settings, reg)
                small_uids = [r["study"] for r in rows["small"]]
                queued = 0
                while queued < args.batch:
                    b = start_reanalysis(reg, queue, study_uids=small_uids[: args.batch - queued],
                                         reason="benchmark")
                    queued += b.total
                time.sleep(2)
                newcomer = pairs[args.small]
                subprocess.run([FOLLOWUP, "procedures", "add", str(newcomer / "procedure.json")], env=env,
                               check=True, capture_output=True)
                harness.storescu(newcomer / "baseline", port)
                time.sleep(QUIET_S + 2)
                t_send = time.time()
                res = send_and_time(newcomer, port, received, reg, 600)
                fu = res["study"]
                a = reg.latest_analysis(fu)
                st = reg.study(fu)
                batch_s = [x.duration_s for x in reg.analyses() if x.queue == "batch" and x.duration_s]
                waited = (a.started_at - st.enqueued_at).total_seconds() \
                    if a and a.started_at and st and st.enqueued_at else None
                fairness = {
                    "batch_queued": queued,
                    "batch_done_before_arrival_finished": len(batch_s),
                    "arrival_wait_s": waited,
                    "mean_batch_task_s": statistics.mean(batch_s) if batch_s else None,
                    "arrival_latency_s": res["latency_s"], "since_send_s": time.time() - t_send,
                }
                print("fairness", fairness, flush=True)
    lines = [f"# Service benchmark ({dt.date.today().isoformat()}, {os.cpu_count()} cores, one worker on both queues)",
             "", f"Quiet period (stable study) {QUIET_S:g} s, included in the latency.", "",
             "| study | instances sent in | last instance -> SR at PACS | analysis (worker) |",
             "| --- | ---: | ---: | ---: |"]
    for kind in ("small", "full"):
        for r in rows[kind]:
            lines.append(f"| {kind} {r['study'][-12:]} ({r['status']}) | {r['send_s']:.1f} s "
                         f"| {r['latency_s']:.1f} s | {r['analysis_s']:.1f} s |")
    for kind in ("small", "full"):
        ds = [r["analysis_s"] for r in rows[kind] if r["analysis_s"]]
        if ds:
            lines.append(f"\nThroughput of one worker, {kind}: {3600 / statistics.mean(ds):.0f} studies/hour "
                         f"(mean analysis {statistics.mean(ds):.1f} s).")
    if fairness:
        lines += ["", f"Fairness: {fairness['batch_queued']} batch reanalyses queued before a new study arrived; "
                  f"the new study waited {fairness['arrival_wait_s']:.1f} s for the worker (mean batch task "
                  f"{fairness['mean_batch_task_s']:.1f} s; {fairness['batch_done_before_arrival_finished']} batch "
                  f"tasks had finished when the new study's SR reached PACS, "
                  f"{fairness['arrival_latency_s']:.1f} s after its last instance)."]
    lines += ["", "Command: `.venv/bin/python benchmarks/bench_service.py`", ""]
    write_results(HERE / "results" / "service.md", "\n".join(lines))


if __name__ == "__main__":
    main()
