"""End-to-end benchmark of ``followup analyze``: wall time, peak memory and the time per stage, for a
full-size and a small synthetic pair, against the floor of only reading the DICOM files.

Measured in the same run:
* the CLI, ``followup analyze`` in a fresh process (interpreter start and imports included): wall
  time and peak resident memory (``os.wait4``'s rusage of that process);
* the same analysis in a fresh process with its stages timed (``run_job``'s ``timings_s``,
  plus the imports), then again in the same process: the second run is a worker's steady state
  (a Celery worker imports once and analyses many studies), whose time gives one worker's
  throughput in studies per hour;
* the floor (``followup.testing.bench``'s functions, as ``benchmarks/bench_ingest.py`` measures
  them): reading every byte of both studies, and reading + decoding every file with pydicom.

Usage: .venv/bin/python benchmarks/bench_analyze.py [--full-pair DIR] [--small-pair DIR] [--repeats N]
Pairs are generated once (``followup synth``) into benchmarks/.cache/ (about a minute for the full
size). Writes benchmarks/results/analyze.md and prints it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from followup.testing import bench

HERE = Path(__file__).resolve().parent
CACHE = HERE / ".cache"
STAGES = ("read_followup", "read_baseline", "registration", "motion", "enhancement",
          "segmentation", "scoring", "key_images", "pdf", "dicom", "write")
STAGE_GROUPS = (  # the stages -> run_job's timings
    ("DICOM read", ("read_followup", "read_baseline")),
    ("registration", ("registration",)),
    ("motion correction", ("motion",)),
    ("enhancement", ("enhancement",)),
    ("scoring (segmentation + probability)", ("segmentation", "scoring")),
    ("reports: key images", ("key_images",)),
    ("reports: PDF", ("pdf",)),
    ("reports: DICOM SR/SEG/PDF", ("dicom",)),
    ("reports: JSON/HTML/FHIR + writing", ("write",)),
)

# Runs in a fresh interpreter: imports as the CLI does, then two analyses (cold, warm).
_STAGED = """
import json, sys, time
t0 = time.perf_counter()
import followup.cli  # noqa: F401  (the CLI's own imports)
from followup.job import run_job
from followup.pipelines.registration.compute import compute_device
from followup.procedure import load_procedure
import torch
from pathlib import Path
t1 = time.perf_counter()
pair, out = Path(sys.argv[1]), Path(sys.argv[2])
record = load_procedure(pair / "procedure.json")
cold = run_job(pair / "followup", pair / "baseline", record, out / "cold")
warm = run_job(pair / "followup", pair / "baseline", record, out / "warm")
print(json.dumps({"import": t1 - t0, "cold": cold.timings_s, "warm": warm.timings_s,
                  "status": cold.report.status, "device": str(compute_device()),
                  "torch_threads": torch.get_num_threads()}))
"""


def cli_run(pair: Path) -> tuple[float, float]:
    """(wall seconds, peak RSS in MB) of one ``followup analyze`` process."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [str(bench.FOLLOWUP), "analyze", "--baseline", str(pair / "baseline"), "--followup",
               str(pair / "followup"), "--procedure", str(pair / "procedure.json"), "--out", tmp]
        t = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t
        proc.returncode = os.waitstatus_to_exitcode(status)
        err = proc.stderr.read().decode() if proc.stderr else ""
        if proc.returncode != 0:
            raise RuntimeError(f"followup analyze failed ({proc.returncode}): {err[-500:]}")
    return wall, usage.ru_maxrss / 1024.0  # ru_maxrss is in kB on Linux


def staged_run(pair: Path) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = subprocess.run([sys.executable, "-c", _STAGED, str(pair), tmp], check=True,
                             capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def measure(pair: Path, repeats: int) -> dict:
    cli = [cli_run(pair) for _ in range(repeats)]
    staged = [staged_run(pair) for _ in range(repeats)]
    med = statistics.median

    def stage(kind: str, name: str) -> float:
        return med([s[kind].get(name, 0.0) for s in staged])

    return {
        "cli_wall": med([w for w, _ in cli]), "cli_walls": [w for w, _ in cli],
        "peak_mb": max(m for _, m in cli),
        "import": med([s["import"] for s in staged]),
        "cold": {k: stage("cold", k) for k in (*STAGES, "total")},
        "warm": {k: stage("warm", k) for k in (*STAGES, "total")},
        "status": staged[0]["status"], "device": staged[0]["device"],
        "torch_threads": staged[0]["torch_threads"],
    }


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def table(full: dict, small: dict, floor_read: float, floor_decode: float, n_files: int,
          size_mb: float, repeats: int, load: tuple[float, float]) -> str:
    f, s = full, small
    lines = [
        f"# `followup analyze` end to end ({dt.date.today().isoformat()})",
        "",
        (f"Machine: {cpu_model()}, {os.cpu_count()} cores, {platform.machine()}, Python "
         f"{platform.python_version()}; compute device `{f['device']}` (torch intra-op threads "
         f"{f['torch_threads']} outside registration, 1 inside). Load average before / after the "
         f"run: {load[0]:.2f} / {load[1]:.2f} (other work on the machine makes every figure noisier)."),
        (f"Median of {repeats} runs each (page cache warm). Full pair: residual seed 5, single-series "
         f"layout, 448 x 448 x 160, 1 pre + 5 post phases per study, {n_files} files, {size_mb:.0f} MB. "
         "Small pair: residual seed 1, per-phase layout, 128 x 128 x 48, 1 pre + 4 post phases."),
        "",
        "| | full size | small |",
        "| --- | ---: | ---: |",
        f"| **`followup analyze` (CLI), wall** | **{f['cli_wall']:.2f} s** | **{s['cli_wall']:.2f} s** |",
        (f"| peak memory (resident, CLI process) | {f['peak_mb'] / 1024:.2f} GB | "
         f"{s['peak_mb'] / 1024:.2f} GB |"),
        f"| interpreter start + imports | {f['import']:.2f} s | {s['import']:.2f} s |",
    ]
    for name, keys in STAGE_GROUPS:
        lines.append(f"| {name} | {sum(f['cold'][k] for k in keys):.2f} s | "
                     f"{sum(s['cold'][k] for k in keys):.2f} s |")
    lines += [
        (f"| analysis in a fresh process (`run_job`, sum of the above but imports) | "
         f"{f['cold']['total']:.2f} s | {s['cold']['total']:.2f} s |"),
        (f"| analysis in a warm worker process (second study) | {f['warm']['total']:.2f} s | "
         f"{s['warm']['total']:.2f} s |"),
        (f"| **one worker's throughput** (3600 / warm analysis) | **{3600 / f['warm']['total']:.0f} "
         f"studies/h** | **{3600 / s['warm']['total']:.0f} studies/h** |"),
        (f"| throughput if every study paid the CLI's start-up (3600 / CLI wall) | "
         f"{3600 / f['cli_wall']:.0f} studies/h | {3600 / s['cli_wall']:.0f} studies/h |"),
        "",
        "The floor: only reading the DICOM files of both studies (full pair):",
        "",
        "| | seconds | CLI end to end / floor |",
        "| --- | ---: | ---: |",
        (f"| read every byte of every file (I/O floor) | {floor_read:.2f} | "
         f"{f['cli_wall'] / floor_read:.1f} x |"),
        (f"| read + decode every file (pydicom `dcmread` + `pixel_array`) | {floor_decode:.2f} | "
         f"{f['cli_wall'] / floor_decode:.1f} x |"),
        "",
        "Warm-worker stage times (s), full / small: "
        + ", ".join(f"{k} {f['warm'][k]:.2f} / {s['warm'][k]:.2f}" for k in STAGES) + ".",
        "",
        (f"CLI wall per run (s): full {', '.join(f'{w:.2f}' for w in f['cli_walls'])}; "
         f"small {', '.join(f'{w:.2f}' for w in s['cli_walls'])}."),
        "",
        "Command: `.venv/bin/python benchmarks/bench_analyze.py`",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--full-pair", type=Path, default=CACHE / "full-residual-5-single-series")
    ap.add_argument("--small-pair", type=Path, default=CACHE / "small-residual-1-per-phase")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    full_pair = bench.ensure_pair(args.full_pair, "full", "residual", 5, "single-series")
    small_pair = bench.ensure_pair(args.small_pair, "small", "residual", 1, "per-phase")
    load_before = os.getloadavg()[0]
    files = bench.files_of(full_pair)
    size_mb = sum(p.stat().st_size for p in files) / 1e6
    floor_read = bench.timed(bench.read_floor, files, repeats=args.repeats)
    floor_decode = bench.timed(bench.naive_pydicom, files, repeats=args.repeats)
    full = measure(full_pair, args.repeats)
    small = measure(small_pair, args.repeats)
    text = table(full, small, floor_read, floor_decode, len(files), size_mb, args.repeats,
                 (load_before, os.getloadavg()[0]))
    bench.write_results(HERE / "results" / "analyze.md", text)


if __name__ == "__main__":
    main()
