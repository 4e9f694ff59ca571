"""Load benchmark on loopback with real processes: 8 concurrent associations (dcmtk storescu, one
association per study, TCP_NODELAY=1) send 20 patients' baseline and follow-up studies (the
cohort of ``followup.synth.cohort``: 40 small studies, over 10,000 instances).

Measured in the same run, on the same cohort:
1. peer: dcmtk ``storescp --fork`` receiving the load (writes each file, no fsync, no database);
2. the durability floor: the same files written by as many threads exactly as our store writes
   them (temp file, fsync, rename, directory fsync), no network, parsing or registry: the disk's
   share of the gap between the peer and us;
3. ours: ``followup serve-dicom`` receiving it with no worker running, so the receive phase has
   the machine: wall time, instances/s, MB/s, and the listener's peak resident memory (VmHWM);
4. analysis: then ``--workers`` Celery workers start and analyse the 20 follow-ups (baselines are
   classified): studies/hour from the first analysis started to the last one finished.
The outcome is checked as tests/integration/test_load.py does (counts only): every instance
registered once, one analysis per study, one SR per follow-up at the receiving PACS.

Usage: .venv/bin/python benchmarks/bench_load.py [--patients 20] [--associations 8] [--workers 1]
Writes benchmarks/results/load.md and prints it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pydicom
from sqlalchemy import func, select

from followup.service.registry import Analysis, Instance, Registry, Study
from followup.service.store import Store
from followup.synth.cohort import CohortCase, make_cohort, sending_lanes
from followup.testing import service_harness as harness
from followup.testing.bench import write_results
from followup.testing.service_harness import FOLLOWUP, free_port, process

HERE = Path(__file__).resolve().parent

QUIET_S = 2.0
CACHE = Path(os.environ.get("FOLLOWUP_BENCH_CACHE", "/tmp/followup-bench"))
TIMEOUT_S = 3600


def send_lanes(lanes: list[list[Path]], port: int, called: str) -> float:
    """Every lane on its own thread, one storescu (one association) per study; wall seconds."""
    env = dict(os.environ, TCP_NODELAY="1")

    def lane(folders: list[Path]) -> None:
        for folder in folders:
            r = subprocess.run(["storescu", "-aet", "PACS", "-aec", called, "+sd", "+r", "-xs", "127.0.0.1",
                                str(port), str(folder)], check=False, capture_output=True, text=True,
                               env=env, timeout=900)
            if r.returncode != 0 or "E:" in r.stderr:
                raise RuntimeError(f"storescu {folder} failed: {r.stderr[-500:]}")

    t0 = time.perf_counter()
    with ThreadPoolExecutor(len(lanes)) as pool:
        list(pool.map(lane, lanes))
    return time.perf_counter() - t0


def proc_status_kb(pid: int, field: str) -> int:
    """A memory figure of /proc/PID/status in KiB (VmHWM: peak resident set; VmRSS: now)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def peer_receive(tmp: Path, lanes: list[list[Path]]) -> float:
    out = tmp / "storescp-received"
    out.mkdir()
    port = free_port()
    with process(["storescp", "--fork", "--aetitle", "PEER", "--output-directory", str(out), "+xa", str(port)],
                 tmp / "storescp-peer.log", dict(os.environ, TCP_NODELAY="1")):
        harness.wait_port(port)
        wall = send_lanes(lanes, port, "PEER")
    return wall


def durable_write_floor(tmp: Path, cases: list[CohortCase], threads: int) -> float:
    """The disk's share: the same files written by ``threads`` threads exactly as the listener's
    store writes them (temp file, fsync, rename, directory fsync), with no network, no DICOM
    parsing and no registry; wall seconds."""
    store = Store(tmp / "floor")
    files = [f for c in cases for role in ("baseline", "followup") for f in sorted((c.path / role).glob("*.dcm"))]

    def write(f: Path) -> None:
        store.write_atomic(store.instances / f.parent.parent.name / f.parent.name / f.name, f.read_bytes())

    t0 = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(write, files))
    return time.perf_counter() - t0


def followups_done(reg: Registry, uids: set[str], received: Path) -> bool:
    with reg.session() as s:
        done = s.scalar(select(func.count()).select_from(Study).where(
            Study.study_uid.in_(uids), Study.state.in_(("complete", "deferred", "failed"))))
    srs = sum(1 for f in received.rglob("*") if f.is_file() and f.name.startswith("SR"))
    return done == len(uids) and srs >= len(uids)


def check_outcome(reg: Registry, cases: list[CohortCase], received: Path) -> list[str]:
    """What went wrong, if anything (the load test asserts the same and more)."""
    problems = []
    with reg.session() as s:
        n_rows = s.scalar(select(func.count()).select_from(Instance))
        per_study = Counter(a.study_uid for a in s.scalars(select(Analysis)))
        states = {st.study_uid: st.state for st in s.scalars(select(Study))}
    if n_rows != sum(c.instances for c in cases):
        problems.append(f"{n_rows} instances registered, {sum(c.instances for c in cases)} sent")
    for c in cases:
        if per_study[c.followup_study_uid] != 1 or per_study[c.baseline_study_uid] != 1:
            problems.append(f"case {c.index}: analyses {per_study[c.baseline_study_uid]}, "
                            f"{per_study[c.followup_study_uid]}")
        if states.get(c.followup_study_uid) != "complete":
            problems.append(f"case {c.index}: follow-up {states.get(c.followup_study_uid)}")
    srs = Counter(str(pydicom.dcmread(f, stop_before_pixels=True).StudyInstanceUID)
                  for f in received.rglob("SR*") if f.is_file())
    if srs != Counter({c.followup_study_uid: 1 for c in cases}):
        problems.append(f"SRs at the PACS: {sum(srs.values())} for {len(srs)} studies")
    return problems


def ours(tmp: Path, cases: list[CohortCase], lanes: list[list[Path]], workers: int) -> dict:
    followups = {c.followup_study_uid for c in cases}
    data = tmp / "data"
    with harness.redis_server(tmp) as redis_url, harness.storescp(tmp) as (pacs_port, received):
        env = harness.service_env(data, redis_url)
        subprocess.run([FOLLOWUP, "procedures", "add", *[str(c.path / "procedure.json") for c in cases]],
                       env=env, check=True, capture_output=True)
        port = free_port()
        with process([FOLLOWUP, "serve-dicom", "--port", str(port), "--host", "127.0.0.1",
                      "--allow", "PACS", "--destination", f"PACS@127.0.0.1:{pacs_port}",
                      "--quiet-seconds", str(QUIET_S)],
                     tmp / "listener.log", env) as listener:
            harness.wait_port(port)
            time.sleep(1.0)
            rss_idle_kb = proc_status_kb(listener.pid, "VmRSS")
            wall = send_lanes(lanes, port, "FOLLOWUP")
            peak_kb = proc_status_kb(listener.pid, "VmHWM")
            reg = Registry(f"sqlite:///{(data / 'followup.db').resolve()}")
            worker_env = dict(env, OMP_NUM_THREADS="1") if workers > 1 else env
            logs = [tmp / f"worker{i}.log" for i in range(workers)]
            procs = [process([FOLLOWUP, "worker", "--queues", "realtime,batch",
                              "--hostname", f"bench{i}@%h"], log, worker_env)
                     for i, log in enumerate(logs)]
            for p in procs:
                p.__enter__()
            try:
                harness.wait_for(lambda: followups_done(reg, followups, received), TIMEOUT_S,
                                 "every follow-up analysed", interval=2)
                time.sleep(QUIET_S + 3)  # a second analysis, if any, would show now
                peak_kb = max(peak_kb, proc_status_kb(listener.pid, "VmHWM"))
            finally:
                for p in reversed(procs):
                    p.__exit__(None, None, None)
        with reg.session() as s:
            done = [a for a in s.scalars(select(Analysis).where(Analysis.study_uid.in_(followups)))
                    if a.started_at and a.finished_at]
        problems = check_outcome(reg, cases, received)
    finished = [a.finished_at for a in done if a.finished_at]
    started = [a.started_at for a in done if a.started_at]
    span = (max(finished) - min(started)).total_seconds()
    durations = [a.duration_s or 0.0 for a in done]  # set together with finished_at
    return {"wall_s": wall, "rss_idle_mb": rss_idle_kb / 1024, "peak_rss_mb": peak_kb / 1024,
            "analysed": len(done), "analysis_span_s": span,
            "mean_analysis_s": sum(durations) / len(done), "problems": problems}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--patients", type=int, default=20)
    ap.add_argument("--associations", type=int, default=8)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--keep", action="store_true", help="keep the run's folder (about 1 GB: three copies)")
    args = ap.parse_args()
    load_before = os.getloadavg()
    cases = make_cohort(CACHE / "load-cohort", args.patients)
    lanes = sending_lanes(cases, args.associations)
    n = sum(c.instances for c in cases)
    mb = sum(c.nbytes for c in cases) / 1e6
    tmp = Path(tempfile.mkdtemp(prefix="followup-bench-load-"))
    try:
        peer_s = peer_receive(tmp, lanes)
        print(f"peer storescp: {n} instances in {peer_s:.1f} s", flush=True)
        floor_s = durable_write_floor(tmp, cases, args.associations)
        print(f"durable writes alone: {n} instances in {floor_s:.1f} s", flush=True)
        r = ours(tmp, cases, lanes, args.workers)
    finally:
        if args.keep:
            print(f"run folder kept: {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    print(f"followup: {n} instances in {r['wall_s']:.1f} s; {r['analysed']} analysed in "
          f"{r['analysis_span_s']:.1f} s", flush=True)
    load_after = os.getloadavg()
    ours_rate, peer_rate = n / r["wall_s"], n / peer_s
    peer_row = (f"| dcmtk storescp --fork (peer: writes files, no fsync, no database) | {peer_s:.1f} s | "
                f"{peer_rate:.0f} | {mb / peer_s:.1f} | 1.00 | - |")
    floor_row = (f"| durable writes alone ({args.associations} threads: temp file, fsync, rename, directory "
                 f"fsync; no network, parsing or registry) | {floor_s:.1f} s | {n / floor_s:.0f} | "
                 f"{mb / floor_s:.1f} | {n / floor_s / peer_rate:.2f} | - |")
    our_row = (f"| followup serve-dicom (fsync file + directory, SQLite registry, before acknowledging) | "
               f"{r['wall_s']:.1f} s | {ours_rate:.0f} | {mb / r['wall_s']:.1f} | {ours_rate / peer_rate:.2f} | "
               f"{r['peak_rss_mb']:.0f} MB ({r['rss_idle_mb']:.0f} MB idle) |")
    outcome = ("every instance registered once, one analysis per study, one SR per follow-up at the PACS."
               if not r["problems"] else "PROBLEMS: " + "; ".join(r["problems"]))
    lines = [
        f"# Load benchmark ({dt.date.today().isoformat()})", "",
        (f"Machine: {os.cpu_count()} cores, {cpu_model()}; load average {load_before[0]:.1f} before, "
         f"{load_after[0]:.1f} after (other work on the machine slows every figure)."), "",
        (f"Load: {args.patients} patients, each a baseline and a follow-up study: {2 * args.patients} studies, "
         f"{n} instances, {mb:.0f} MB, sent by {len(lanes)} concurrent associations (dcmtk storescu, "
         "one association per study, TCP_NODELAY=1) on loopback."), "",
        "| receiver | wall time | instances/s | MB/s | ratio to storescp | listener peak RSS |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
        peer_row, floor_row, our_row, "",
        (f"Analysis after the receive phase, {args.workers} worker(s) on both queues: {r['analysed']} "
         f"follow-ups analysed and their SR/SEG/PDF delivered in {r['analysis_span_s']:.1f} s, "
         f"{3600 * r['analysed'] / r['analysis_span_s']:.0f} studies/hour (mean analysis "
         f"{r['mean_analysis_s']:.1f} s; the {args.patients} baselines are classified, not analysed)."), "",
        f"Outcome: {outcome}", "",
        (f"Command: `.venv/bin/python benchmarks/bench_load.py --patients {args.patients} "
         f"--associations {args.associations} --workers {args.workers}`"), "",
    ]
    write_results(HERE / "results" / "load.md", "\n".join(lines))
    if r["problems"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
