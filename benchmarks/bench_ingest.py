"""Ingestion benchmark: `followup inspect` on a full-size synthetic pair against its peers.

Peers measured in the same run, on the same files:
* floor: reading every byte of every file (the I/O limit, page cache warm);
* naive: pydicom ``dcmread`` + ``pixel_array`` of every file, the usual script.

Usage: .venv/bin/python benchmarks/bench_ingest.py [--pair DIR] [--repeats N]
Writes benchmarks/results/ingest.md and prints it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import subprocess
from pathlib import Path

from followup.testing.bench import (
    FOLLOWUP,
    ensure_pair,
    files_of,
    naive_pydicom,
    read_floor,
    timed,
    write_results,
)

HERE = Path(__file__).resolve().parent
CACHE = Path(os.environ.get("FOLLOWUP_BENCH_CACHE", "/tmp/followup-bench"))


def inspect_in_process(pair: Path) -> None:
    from followup.dicom import inspect_directory

    inspect_directory(pair)


def inspect_cli(pair: Path) -> None:
    subprocess.run([str(FOLLOWUP), "inspect", str(pair), "--json"], check=True, stdout=subprocess.DEVNULL)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pair", type=Path, default=CACHE / "full-residual-5-single-series")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    pair = ensure_pair(args.pair, "full", "residual", 5, "single-series")
    files = files_of(pair)
    size_mb = sum(f.stat().st_size for f in files) / 1e6
    t_floor = timed(read_floor, files, repeats=args.repeats)
    t_naive = timed(naive_pydicom, files, repeats=args.repeats)
    t_inproc = timed(inspect_in_process, pair, repeats=args.repeats)
    t_cli = timed(inspect_cli, pair, repeats=args.repeats)
    rows = [
        ("read every byte (I/O floor)", t_floor),
        ("pydicom dcmread + pixel_array, every file", t_naive),
        ("followup inspect, in process", t_inproc),
        ("followup inspect, CLI (process start included)", t_cli),
    ]
    lines = [
        f"# Ingestion benchmark ({dt.date.today().isoformat()}, {platform.machine()}, "
        f"{os.cpu_count()} cores)",
        "",
        f"Full-size pair: {len(files)} files, {size_mb:.0f} MB (baseline + follow-up, "
        "448 x 448 x 160, 1 pre + 5 post phases each, single-series layout).",
        f"Median of {args.repeats} runs after one warm-up (page cache warm).",
        "",
        "| step | seconds | ratio to I/O floor | ratio to naive pydicom |",
        "| --- | ---: | ---: | ---: |",
    ]
    for name, t in rows:
        lines.append(f"| {name} | {t:.2f} | {t / t_floor:.1f} | {t / t_naive:.2f} |")
    lines += ["", "Command: `.venv/bin/python benchmarks/bench_ingest.py`", ""]
    write_results(HERE / "results" / "ingest.md", "\n".join(lines))


if __name__ == "__main__":
    main()
