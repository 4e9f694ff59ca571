"""A hostile PACS against ``followup serve-dicom`` (issue 22): what the listener holds under attack,
against its own idle state measured in the same run.

(a) F1, memory: an unknown calling AE sends an A-ASSOCIATE-RQ declaring 300 MiB and streams it
    until the listener closes the connection (or all of it is sent). Reported: the listener's idle
    RSS, its peak RSS during the attack (VmRSS sampled every 5 ms, and the kernel's VmHWM), the
    peak's excess over idle (target: at most +50 MB), the bytes it took before closing, the time
    to its A-ASSOCIATE-RJ.
(b) F4, threads: 50 connections each send part of a PDU (half a header, half a header and 14 bytes
    of an A-ASSOCIATE-RQ) and then nothing. Reported: the listener's threads idle, 1 s after the
    50 partial PDUs, 10 s after (target: back to idle within the PDU timeout, 5 s by default), and
    the connections it closed.
(c) F2, round trips: a synthetic follow-up study (baseline in the store, the genuine patient's
    procedure record added) with a stray instance (the study's UID, another Patient ID) sent
    before it, and after its report: the genuine instances acknowledged, the stray's status, the
    study's state and patient, the analysis's outcome. In-process listener and analysis (the
    worker's task, ``process_analysis``), as tests/integration/test_study_patient.py does.

``--old-tree DIR`` runs (a) and (b) also against the listener of another checkout (e.g. the tree
before issue 22: ``git archive d097afb | tar -x -C DIR``), in the same run, for the comparison.

Usage: PYTHONPATH=$PWD .venv/bin/python benchmarks/bench_hostile_listener.py [--old-tree DIR] [--no-f2]
Writes benchmarks/results/hostile-listener.md and prints it.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import platform
import socket
import struct
import sys
import tempfile
import threading
import time
from pathlib import Path

from followup.testing.bench import write_results
from followup.testing.service_harness import FOLLOWUP, free_port, process, wait_port

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
ATTACK_BYTES = 300 << 20
CHUNK = 1 << 20
PARTIAL_CONNECTIONS = 50


def status(pid: int) -> dict[str, int]:
    """VmRSS, VmHWM (kB) and Threads of a process (/proc)."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM", "Threads"):
            out[key] = int(value.split()[0])
    return out


@contextlib.contextmanager
def listener(tree: Path, tmp: Path):
    """``followup serve-dicom`` of the checkout ``tree`` (its code first on PYTHONPATH); (pid, port)."""
    port = free_port()
    tmp.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PYTHONPATH=str(tree), FOLLOWUP_DATA_DIR=str(tmp / "data"))
    env.pop("FOLLOWUP_DB_URL", None)
    cmd = [FOLLOWUP, "serve-dicom", "--ae-title", "FOLLOWUP", "--port", str(port), "--host", "127.0.0.1",
           "--allow", "PACS", "--quiet-seconds", "3600"]
    with process(cmd, tmp / "listener.log", env) as proc:
        wait_port(port)
        time.sleep(1.0)  # settled: the stability monitor and the reconciliation thread started
        yield proc.pid, port


def associate_rq_head(declared: int, calling: str) -> bytes:
    return (struct.pack(">BBL", 0x01, 0, declared) + struct.pack(">HH", 1, 0) + b"FOLLOWUP".ljust(16)
            + calling.encode().ljust(16) + bytes(32))


def memory_attack(pid: int, port: int) -> dict:
    """(a): the 300 MiB association request from an unknown AE."""
    idle = status(pid)["VmRSS"]
    peak = [idle]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            with contextlib.suppress(OSError):
                peak.append(status(pid)["VmRSS"])
            time.sleep(0.005)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    sent, answer, t_answer = 0, b"", None
    t0 = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port)) as sock:
        head = associate_rq_head(ATTACK_BYTES, "INTRUDER")
        sock.sendall(head)
        sent = len(head) - 6
        sock.settimeout(0.0)
        body = bytes(CHUNK)
        while sent < ATTACK_BYTES:
            with contextlib.suppress(BlockingIOError):
                answer += sock.recv(64)
                if answer and t_answer is None:
                    t_answer = time.perf_counter() - t0
            try:
                sock.settimeout(5.0)
                sock.sendall(body[:min(CHUNK, ATTACK_BYTES - sent)])
                sent += min(CHUNK, ATTACK_BYTES - sent)
                sock.settimeout(0.0)
            except OSError:  # the listener closed the connection
                break
        sock.settimeout(10.0)
        with contextlib.suppress(OSError):
            while chunk := sock.recv(64):
                answer += chunk
                if t_answer is None:
                    t_answer = time.perf_counter() - t0
    time.sleep(0.5)
    done.set()
    sampler.join()
    hwm = status(pid)["VmHWM"]
    return {"idle_mb": idle / 1024, "peak_mb": max(peak) / 1024, "hwm_mb": hwm / 1024,
            "excess_mb": (max(peak) - idle) / 1024, "sent_mib": sent / (1 << 20),
            "answer": {b"\x03": "A-ASSOCIATE-RJ", b"\x07": "A-ABORT", b"": "closed"}.get(answer[:1], answer[:1].hex()),
            "t_answer_s": t_answer}


def partial_pdus(pid: int, port: int) -> dict:
    """(b): 50 connections with a partial PDU each."""
    idle = status(pid)["Threads"]
    socks = []
    for i in range(PARTIAL_CONNECTIONS):
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(associate_rq_head(200, "PACS")[:3 if i % 2 else 20])
        socks.append(s)
    time.sleep(1.0)
    after_1s = status(pid)["Threads"]
    time.sleep(9.0)
    after_10s = status(pid)["Threads"]
    closed = 0
    for s in socks:
        s.settimeout(0.2)
        with contextlib.suppress(TimeoutError, ConnectionResetError):
            closed += s.recv(16) == b""
        s.close()
    return {"idle": idle, "after_1s": after_1s, "after_10s": after_10s, "closed": closed}


def f2_round_trips(tmp: Path) -> list[dict]:
    """(c): the stray before the genuine study, and after its report."""
    from pydicom import dcmread
    from pydicom.uid import generate_uid
    from pynetdicom import AE

    from followup.config import Settings
    from followup.procedure import load_procedure
    from followup.service.listener import serve_dicom
    from followup.service.orchestrator import process_analysis
    from followup.service.work_queue import new_analysis
    from followup.testing.bench import ensure_pair

    pair = ensure_pair(tmp / "pair", "small", "residual", 1, "per-phase")

    def send(port, items):
        ae = AE(ae_title="PACS")
        for cls, ts in {(str(d.SOPClassUID), str(d.file_meta.TransferSyntaxUID)) for d in items}:
            ae.add_requested_context(cls, ts)
        assoc = ae.associate("127.0.0.1", port, ae_title="FOLLOWUP")
        try:
            return [assoc.send_c_store(d).Status for d in items]
        finally:
            assoc.release()

    rows = []
    for order in ("before", "after"):
        settings = Settings(data_dir=tmp / f"f2-{order}", ae_title="FOLLOWUP")
        server = serve_dicom(settings, port=(port := free_port()), allow=["PACS"], quiet_seconds=3600,
                             on_stable=lambda uid: None, block=False, poll_seconds=60)
        try:
            reg = server.registry
            reg.add_procedure(load_procedure(pair / "procedure.json"))
            base = [dcmread(p) for p in sorted((pair / "baseline").glob("*.dcm"))]
            send(port, base)
            process_analysis(settings, reg, server.store,
                             new_analysis(reg, str(base[0].StudyInstanceUID), "realtime").id)
            files = sorted((pair / "followup").glob("*.dcm"))
            genuine = [dcmread(p) for p in files]
            study = str(genuine[0].StudyInstanceUID)
            stray = dcmread(files[0])
            stray.PatientID = "STRAY-PATIENT"
            stray.SOPInstanceUID = stray.file_meta.MediaStorageSOPInstanceUID = generate_uid()
            t0 = time.perf_counter()
            stray_status = send(port, [stray])[0] if order == "before" else None
            statuses = send(port, genuine)
            out = process_analysis(settings, reg, server.store, new_analysis(reg, study, "realtime").id)
            if order == "after":
                stray_status = send(port, [stray])[0]
                again = process_analysis(settings, reg, server.store, new_analysis(reg, study, "realtime").id)
            st = reg.study(study)
            rows.append({"order": order, "genuine_ok": sum(s == 0 for s in statuses), "genuine": len(statuses),
                         "stray": f"0x{stray_status:04X}", "analysis": out.status,
                         "reanalysis": again.status if order == "after" else "-",
                         "state": st.state, "patient": "genuine" if st.patient_id == str(genuine[0].PatientID)
                         else "stray", "review": bool(st.review_reason),
                         "held": len(reg.quarantined(study_uid=study)), "seconds": time.perf_counter() - t0})
        finally:
            server.shutdown()
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--old-tree", type=Path, default=None, help="another checkout to measure beside this one")
    ap.add_argument("--no-f2", action="store_true", help="skip (c), the round trips")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "hostile-listener.md")
    args = ap.parse_args()
    trees = [("this tree", REPO)] + ([("old tree", args.old_tree.resolve())] if args.old_tree else [])
    mem, thr = [], []
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        for name, tree in trees:
            with listener(tree, tmp / f"{name}-a".replace(" ", "-")) as (pid, port):
                mem.append((name, memory_attack(pid, port)))
            with listener(tree, tmp / f"{name}-b".replace(" ", "-")) as (pid, port):
                thr.append((name, partial_pdus(pid, port)))
        f2 = [] if args.no_f2 else f2_round_trips(tmp)
    lines = [f"# Hostile PACS against the listener (issue 22), {dt.date.today()}", "",
             f"{platform.platform()}, {os.cpu_count()} CPUs, Python {sys.version.split()[0]}; "
             "`PYTHONPATH=$PWD .venv/bin/python benchmarks/bench_hostile_listener.py"
             + (" --old-tree DIR`" if args.old_tree else "`"), "",
             "## (a) F1: a 300 MiB A-ASSOCIATE-RQ from an unknown calling AE", "",
             "| listener | idle RSS (MB) | peak RSS (MB) | peak - idle (MB) | VmHWM (MB) | MiB it took | answer | "
             "answer after (s) |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name, m in mem:
        answered = f"{m['t_answer_s']:.3f}" if m["t_answer_s"] is not None else "-"
        lines.append(f"| {name} | {m['idle_mb']:.1f} | {m['peak_mb']:.1f} | **{m['excess_mb']:+.1f}** | "
                     f"{m['hwm_mb']:.1f} | {m['sent_mib']:.1f} | {m['answer']} | {answered} |")
    lines += ["", "MiB it took: what the attacker could send before the listener closed (the socket "
              "buffers hold a few MiB that were never read).", "",
              f"## (b) F4: {PARTIAL_CONNECTIONS} connections with a partial PDU each", "",
              "| listener | threads idle | after 1 s | after 10 s | held after 10 s | connections closed |",
              "| --- | --- | --- | --- | --- | --- |"]
    for name, th in thr:
        lines.append(f"| {name} | {th['idle']} | {th['after_1s']} | {th['after_10s']} | "
                     f"**{th['after_10s'] - th['idle']:+d}** | {th['closed']} of {PARTIAL_CONNECTIONS} |")
    if f2:
        lines += ["", "## (c) F2: a stray instance sent before the genuine study, and after its report", "",
                  "| stray sent | genuine acknowledged | stray answered | analysis | reanalysis after the stray | "
                  "study state | study's patient | flagged for review | quarantine entries | seconds |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
        for r in f2:
            lines.append(f"| {r['order']} | {r['genuine_ok']} of {r['genuine']} | {r['stray']} | {r['analysis']} | "
                         f"{r['reanalysis']} | {r['state']} | {r['patient']} | {r['review']} | {r['held']} | "
                         f"{r['seconds']:.1f} |")
        lines += ["", "Sent first, the stray is acknowledged (nothing says it is one yet) and moved to the "
                  "quarantine when the first genuine instance arrives (its patient has the procedure record)."]
    write_results(args.out, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
