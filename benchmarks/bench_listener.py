"""DICOM listener ingest rate against dcmtk's storescp, in the same run.

One full-size follow-up study (single-series layout: 6 phases x 160 slices of 448 x 448) is sent
by dcmtk's ``storescu`` to

* dcmtk ``storescp`` (the peer: writes each data set to disk, no validation, no registry), and
* ``followup serve-dicom`` (validates each header, writes atomically with fsync, records the
  instance in the registry, answers only then),

alternately, ``--repeats`` times each, every time into an empty data directory. Both sides run
with ``TCP_NODELAY=1`` (without it delayed ACKs cost dcmtk ~44 ms per instance on loopback).
The time is storescu's wall time from start to exit (association, all C-STOREs, release), so
process start of storescu is in both. Reported: instances/s, MB/s, and ours/peer.

Usage: .venv/bin/python benchmarks/bench_listener.py [--repeats 3]
Writes benchmarks/results/listener.md and prints it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from followup.testing.bench import ensure_pair, write_results
from followup.testing.service_harness import FOLLOWUP, free_port, process, wait_port

HERE = Path(__file__).resolve().parent
CACHE = Path(os.environ.get("FOLLOWUP_BENCH_CACHE", "/tmp/followup-bench"))  # bench_ingest.py's pair

ENV = dict(os.environ, TCP_NODELAY="1")


def send(folder: Path, port: int, called: str) -> float:
    t0 = time.perf_counter()
    done = subprocess.run(["storescu", "-aet", "PACS", "-aec", called, "+sd", "+r", "-xs", "127.0.0.1",
                           str(port), str(folder)], capture_output=True, text=True, env=ENV, timeout=600)
    elapsed = time.perf_counter() - t0
    if done.returncode != 0:
        raise RuntimeError(f"storescu failed: {done.stderr[-2000:]}")
    return elapsed


def run_storescp(folder: Path, tmp: Path) -> float:
    out = tmp / "storescp-out"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    port = free_port()
    with process(["storescp", "--aetitle", "PEER", "--output-directory", str(out), "+xa", str(port)],
                 tmp / "storescp.log", ENV):
        wait_port(port)
        elapsed = send(folder, port, "PEER")
    n = sum(1 for _ in out.iterdir())
    expected = sum(1 for _ in folder.rglob("*.dcm"))
    if n != expected:
        raise RuntimeError(f"storescp kept {n} of {expected} instances")
    return elapsed


def run_listener(folder: Path, tmp: Path, sync: bool) -> tuple[float, int]:
    data = tmp / "followup-data"
    shutil.rmtree(data, ignore_errors=True)
    env = dict(ENV, FOLLOWUP_DATA_DIR=str(data), FOLLOWUP_SYNC_STORAGE="1" if sync else "0")
    env.pop("FOLLOWUP_DB_URL", None)
    port = free_port()
    # A long quiet period: no analysis is enqueued while we measure (no Redis needed).
    with process([FOLLOWUP, "serve-dicom", "--ae-title", "FOLLOWUP", "--port", str(port), "--host",
                  "127.0.0.1", "--allow", "PACS", "--quiet-seconds", "3600"], tmp / "listener.log", env) as proc:
        wait_port(port, timeout=60)
        elapsed = send(folder, port, "FOLLOWUP")
        peak_kb = 0
        try:
            for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peak_kb = int(line.split()[1])
        except OSError:
            pass
    n = sum(1 for _ in (data / "store").rglob("*.dcm"))
    expected = sum(1 for _ in folder.rglob("*.dcm"))
    if n != expected:
        raise RuntimeError(f"listener kept {n} of {expected} instances")
    return elapsed, peak_kb


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    for tool in ("storescu", "storescp"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} (dcmtk) is required: make tools")
    pair = ensure_pair(CACHE / "full-residual-5-single-series", "full", "residual", 5, "single-series")
    folder = pair / "followup"
    files = sorted(folder.rglob("*.dcm"))
    n, mb = len(files), sum(f.stat().st_size for f in files) / 1e6
    for f in files:  # warm the page cache: both sides read the same files
        f.read_bytes()
    tmp = Path(tempfile.mkdtemp(prefix="followup-bench-listener-"))
    peer, ours, ours_nosync, peaks = [], [], [], []
    try:
        send_warm = run_storescp(folder, tmp)  # warm-up, not counted
        del send_warm
        for _ in range(args.repeats):
            peer.append(run_storescp(folder, tmp))
            t, peak = run_listener(folder, tmp, sync=True)
            ours.append(t)
            peaks.append(peak)
            t, peak = run_listener(folder, tmp, sync=False)
            ours_nosync.append(t)
            peaks.append(peak)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    p, o, o2 = statistics.median(peer), statistics.median(ours), statistics.median(ours_nosync)
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    table = "\n".join([
        f"# Listener ingest benchmark ({dt.date.today()}, {platform.machine()}, {os.cpu_count()} cores, {cpu})",
        "",
        f"One full-size follow-up study: {n} instances, {mb:.0f} MB, sent by dcmtk storescu "
        f"(TCP_NODELAY=1). Median of {args.repeats} runs each, alternated, after one warm-up.",
        "",
        "| receiver | seconds | instances/s | MB/s | ratio to storescp (rate) |",
        "| --- | ---: | ---: | ---: | ---: |",
        f"| dcmtk storescp (peer) | {p:.2f} | {n / p:.0f} | {mb / p:.0f} | 1.00 |",
        f"| followup serve-dicom (default: FOLLOWUP_SYNC_STORAGE=1, fsync + SQLite FULL) | {o:.2f} | "
        f"{n / o:.0f} | {mb / o:.0f} | {p / o:.2f} |",
        f"| followup serve-dicom, FOLLOWUP_SYNC_STORAGE=0 (atomic rename + WAL, no fsync, like storescp) | "
        f"{o2:.2f} | {n / o2:.0f} | {mb / o2:.0f} | {p / o2:.2f} |",
        "",
        f"Listener peak memory (VmHWM): {max(peaks) / 1024:.0f} MB. "
        f"All runs: storescp {', '.join(f'{x:.2f}' for x in peer)} s; "
        f"followup {', '.join(f'{x:.2f}' for x in ours)} s; "
        f"followup without fsync {', '.join(f'{x:.2f}' for x in ours_nosync)} s.",
        "",
        "What the listener does per instance that storescp does not: header validation (UIDs, SOP "
        "class, modality, pixel-data length, geometry), an atomic write (temp file, rename; with "
        "fsync of file and directory by default), a registry row (SQLite commit); success is "
        "answered only after all three. Neither side decodes pixel data.",
        "",
        "Command: `.venv/bin/python benchmarks/bench_listener.py`",
        "",
    ])
    write_results(HERE / "results" / "listener.md", table)


if __name__ == "__main__":
    main()
