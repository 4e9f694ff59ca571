"""Reading one follow-up study in each transfer syntax the listener accepts, against the same study
uncompressed, measured in the same run.

A synthetic follow-up (``followup synth``, full size by default: 6 phases x 160 slices of
448 x 448) is re-encoded into each syntax family by dcmtk (RLE, big endian, deflated, JPEG Lossless
SV1, JPEG-LS lossless) and by pydicom's own encoder (JPEG 2000 lossless, OpenJPEG); then
``followup.dicom.load_dce_study`` reads and decodes the whole study in each (median of
``--repeats`` after one warm-up: files in the page cache), with the decoders of
``followup/dicom/codecs.py``. The ratio is against the uncompressed copy.

    .venv/bin/python benchmarks/bench_decode.py [--size full|small] [--repeats 2]

Writes ``benchmarks/results/decode.md``.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

import pydicom
from pydicom import uid as U

from followup.dicom import load_dce_study
from followup.dicom.codecs import decoders_of, syntax_name
from followup.testing import bench

HERE = Path(__file__).resolve().parent
CACHE = Path(os.environ.get("FOLLOWUP_BENCH_CACHE", "/tmp/followup-bench"))

# syntax -> dcmtk command line before (input, output); None: pydicom's encoder
DCMTK: dict[str, list[str] | None] = {
    U.RLELossless: ["/usr/bin/dcmcrle"],
    U.ExplicitVRBigEndian: ["/usr/bin/dcmconv", "+tb"],
    U.DeflatedExplicitVRLittleEndian: ["/usr/bin/dcmconv", "+td"],
    U.JPEGLosslessSV1: ["/usr/bin/dcmcjpeg", "+e1"],
    U.JPEGLSLossless: ["/usr/bin/dcmcjpls", "+el"],
    U.JPEG2000Lossless: None,
}


def _pydicom_encode(src: Path, dst: Path, ts: str) -> None:
    ds = pydicom.dcmread(src)
    ds.compress(ts)
    ds.save_as(dst, enforce_file_format=True)


def encode(folder: Path, out: Path, ts: str) -> Path:
    """Every file of ``folder`` re-encoded into ``ts`` under ``out`` (kept between runs)."""
    done = out / ".done"
    if done.exists():
        return out
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    files = sorted(folder.glob("*.dcm"))
    cmd = DCMTK[ts]

    workers = os.cpu_count() or 1
    if cmd is None:  # in processes: the encoders are not safe to run in threads (OpenJPEG crashed)
        with ProcessPoolExecutor(max_workers=workers) as procs:
            list(procs.map(_pydicom_encode, files, [out / f.name for f in files], [ts] * len(files)))
    else:
        with ThreadPoolExecutor(max_workers=workers) as threads:  # each call its own dcmtk process
            list(threads.map(lambda src: subprocess.run([*cmd, str(src), str(out / src.name)], check=True,
                                                          capture_output=True), files))
    done.touch()
    return out


def dce_only(followup: Path, out: Path) -> Path:
    """The follow-up's dynamic series alone (distractor series left out), as one folder."""
    if (out / ".done").exists():
        return out
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    study = load_dce_study(followup, decode_phases=1)
    for path in study.source_paths:
        shutil.copy(path, out / path.name)
    (out / ".done").touch()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", choices=("full", "small"), default="full")
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    pair = bench.ensure_pair(CACHE / f"decode-{args.size}", args.size, "residual", 7, "per-phase")
    plain = dce_only(pair / "followup", CACHE / f"decode-{args.size}-dce")
    n_files = len(list(plain.glob("*.dcm")))
    rows: list[tuple[str, str, float, float]] = []

    def measure(ts: str, folder: Path) -> None:
        read: Callable[[Path], object] = load_dce_study
        seconds = bench.timed(read, folder, repeats=args.repeats)
        size_mb = sum(p.stat().st_size for p in folder.glob("*.dcm")) / 1e6
        native = "our reader" if ts == U.ExplicitVRLittleEndian else "pydicom"
        rows.append((ts, ", ".join(decoders_of(ts)) or native, size_mb, seconds))
        print(f"{syntax_name(ts)}: {seconds:.2f} s", flush=True)

    measure(U.ExplicitVRLittleEndian, plain)
    for ts in DCMTK:
        t0 = time.perf_counter()
        folder = encode(plain, CACHE / f"decode-{args.size}-{ts}", ts)
        print(f"encoded {syntax_name(ts)} in {time.perf_counter() - t0:.0f} s", flush=True)
        measure(ts, folder)
    base = rows[0][3]
    lines = [
        f"# Reading one follow-up study per transfer syntax ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})",
        "",
        f"One synthetic follow-up's dynamic series ({args.size}: {n_files} files), read and decoded whole by "
        f"`load_dce_study`, median of {args.repeats} after a warm-up (files in the page cache). Machine: "
        f"{os.cpu_count()} cores, {platform.processor() or platform.machine()}, load average "
        f"{os.getloadavg()[0]:.1f}. Command: `.venv/bin/python benchmarks/bench_decode.py --size {args.size}`.",
        "",
        "| syntax | UID | decoders installed | size on disk (MB) | read + decode (s) | vs uncompressed |",
        "| --- | --- | --- | ---: | ---: | ---: |",
    ]
    for ts, decoders, size_mb, seconds in rows:
        lines.append(f"| {U.UID(ts).name} | {ts} | {decoders} | {size_mb:.0f} | {seconds:.2f} | "
                     f"{seconds / base:.1f} x |")
    bench.write_results(HERE / "results" / "decode.md", "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
