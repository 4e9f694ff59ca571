"""The API under a hostile body (issue 22, F3): peak memory and ``/health`` latency of a real
uvicorn process while a client streams a 400 MB body without a token.

The API runs in a process of its own (``followup.api.app.serve_api``: uvicorn as ``followup
serve-api`` runs it, without a work queue) on a loopback port, over an empty registry in a
temporary data directory. The benchmark:

1. warms it up (the page, ``/health``, an authenticated search), then reads its idle RSS;
2. per scenario, streams a body as fast as loopback takes it (until the server answers and stops
   reading, or all of it is sent), while a thread samples the server's RSS (``/proc/PID/status``,
   every 5 ms) and another times ``GET /health`` every 50 ms;
3. prints, per scenario: the answer, the bytes the client got into the socket, the peak RSS over
   idle (the target: at most +50 MB), the server's VmHWM, and the slowest ``/health``.

Scenarios: ``no-token``: POST /patients/search, Content-Length 400,000,000, no Authorization;
``no-token-chunked``: the same body chunked (no declared size); ``token-declared``: a valid token
and the declared 400 MB (413 from the declared size); ``token-chunked``: a valid token, chunked,
413 once FOLLOWUP_API_MAX_BODY_BYTES (1 MiB) is passed.

    python benchmarks/bench_hostile_api.py [--mb 400] [--code DIR]

``--code DIR`` runs the server from another checkout (e.g. a worktree of the code before the fix:
``git worktree add /tmp/old d097afb``) to compare; its token check then comes after the body.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

TOKEN = "bench-token-" + "0123456789abcdef" * 2
ROOT = Path(__file__).resolve().parents[1]
SERVER = """
import logging, sys
from pathlib import Path
from followup.api.app import serve_api
from followup.config import Settings
logging.basicConfig(level=logging.WARNING)
serve_api(Settings(data_dir=Path(sys.argv[1]), api_token=sys.argv[2]), port=int(sys.argv[3]))
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _status(pid: int) -> dict[str, int]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0]) * 1024
    return out


class Sampler(threading.Thread):
    """The server's RSS every 5 ms and ``/health``'s latency every 50 ms, until stopped."""

    def __init__(self, pid: int, port: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.port = pid, port
        self.peak_rss, self.slowest_health = 0, 0.0
        self.stop = threading.Event()
        self.health = threading.Thread(target=self._health, daemon=True)

    def run(self) -> None:
        self.health.start()
        while not self.stop.is_set():
            self.peak_rss = max(self.peak_rss, _status(self.pid)["VmRSS"])
            time.sleep(0.005)
        self.health.join()

    def _health(self) -> None:
        while not self.stop.is_set():
            t0 = time.perf_counter()
            with contextlib.suppress(OSError):
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=30).read()
            self.slowest_health = max(self.slowest_health, time.perf_counter() - t0)
            time.sleep(0.05)


def _stream(port: int, path: str, total: int, *, token: bool, chunked: bool) -> tuple[str, int, float]:
    """Send the request and up to ``total`` body bytes; (the answer's status line, bytes sent, seconds)."""
    head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    head += f"Authorization: Bearer {TOKEN}\r\n" if token else ""
    head += "Transfer-Encoding: chunked\r\n" if chunked else f"Content-Length: {total}\r\n"
    conn = socket.create_connection(("127.0.0.1", port), timeout=10)
    conn.sendall(head.encode() + b"\r\n")
    # a JSON document of exactly ``total`` bytes: {"q": "aaa...a"}
    opening, closing, block = b'{"q": "', b'"}', b"a" * (1 << 20)
    parts = [opening]
    left = total - len(opening) - len(closing)
    sent, t0 = 0, time.perf_counter()
    answer = b""
    try:
        while True:
            if not parts:
                if left <= 0:
                    break
                n = min(left, len(block))
                parts, left = [block[:n]], left - n
                if left <= 0:
                    parts.append(closing)
            data = parts.pop(0)
            conn.sendall(b"%x\r\n" % len(data) + data + b"\r\n" if chunked else data)  # blocks, then
            sent += len(data)  # times out, once the server stops reading
        if chunked:
            conn.sendall(b"0\r\n\r\n")
    except OSError:  # timed out (the server stopped reading), or it closed the connection
        pass
    elapsed = time.perf_counter() - t0
    conn.settimeout(30)
    try:
        while b"\r\n" not in answer:
            data = conn.recv(4096)
            if not data:
                break
            answer += data
    except OSError:
        pass
    conn.close()
    return answer.split(b"\r\n", 1)[0].decode(errors="replace") or "(no answer)", sent, elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mb", type=int, default=400, help="body size in MB (10^6 bytes)")
    parser.add_argument("--code", type=Path, default=ROOT, help="the checkout the server runs from")
    parser.add_argument("--scenarios", default="no-token,no-token-chunked,token-declared,token-chunked")
    args = parser.parse_args()
    total = args.mb * 1_000_000
    port = _free_port()
    with tempfile.TemporaryDirectory() as data:
        env = dict(os.environ, PYTHONPATH=str(args.code.resolve()))
        server = subprocess.Popen([sys.executable, "-c", SERVER, data, TOKEN, str(port)], env=env, cwd=data,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2).read()
                    break
                except OSError:
                    time.sleep(0.2)
            for _ in range(5):  # warm up: the page, a search, health
                urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10).read()
                req = urllib.request.Request(f"http://127.0.0.1:{port}/patients/search", data=b'{"q": "x"}',
                                             headers={"Authorization": f"Bearer {TOKEN}",
                                                      "Content-Type": "application/json"})
                urllib.request.urlopen(req, timeout=10).read()
            time.sleep(0.5)
            idle = _status(server.pid)["VmRSS"]
            print(f"server: {args.code} (pid {server.pid}), idle RSS {idle / 1e6:.1f} MB, body {args.mb} MB")
            results = []
            for name in args.scenarios.split(","):
                path = "/procedures" if name == "token-chunked" else "/patients/search"
                sampler = Sampler(server.pid, port)
                sampler.start()
                status, sent, seconds = _stream(port, path, total, token=name.startswith("token"),
                                                chunked=name.endswith("chunked"))
                time.sleep(0.3)
                sampler.stop.set()
                sampler.join()
                row = {"scenario": name, "answer": status, "sent_mb": round(sent / 1e6, 1),
                       "send_s": round(seconds, 2), "peak_over_idle_mb": round((sampler.peak_rss - idle) / 1e6, 1),
                       "vmhwm_mb": round(_status(server.pid)["VmHWM"] / 1e6, 1),
                       "slowest_health_s": round(sampler.slowest_health, 3)}
                results.append(row)
                print(json.dumps(row))
            worst = max(r["peak_over_idle_mb"] for r in results)
            print(f"worst peak over idle: {worst:.1f} MB (target <= 50 MB): {'PASS' if worst <= 50 else 'FAIL'}")
        finally:
            server.terminate()
            server.wait(10)


if __name__ == "__main__":
    main()
