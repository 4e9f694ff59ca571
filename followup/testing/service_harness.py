"""Real processes for service tests and benchmarks: redis-server, dcmtk storescp as PACS,
followup subprocesses.

Every server binds to 127.0.0.1 on a free port and is stopped by its fixture."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pydicom
import pydicom.errors

from followup.config import child_environment

FOLLOWUP = str(Path(sys.executable).with_name("followup"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


def wait_for(predicate, timeout: float, what: str, interval: float = 0.5):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout} s waiting for {what}")


def require(tool: str, package: str) -> str:
    """The tool's path; the calling test is skipped, saying so, where it is not installed."""
    path = shutil.which(tool)
    if path is None:
        import pytest  # only a test gets here (benchmarks need the tools)

        pytest.skip(f"{tool} (Debian package {package}) is not installed: this check did NOT run")
    return path


def service_env(data_dir: Path, redis_url: str) -> dict[str, str]:
    """The environment of ``followup`` subprocesses sharing ``data_dir`` and a broker: this
    process's, without a database URL, destination or retrieval PACS set outside the run."""
    env = child_environment(FOLLOWUP_DATA_DIR=str(data_dir), FOLLOWUP_REDIS_URL=redis_url)
    for k in ("FOLLOWUP_DB_URL", "FOLLOWUP_DESTINATION", "FOLLOWUP_RETRIEVE"):
        env.pop(k, None)
    return env


@contextmanager
def process(cmd: list[str], log: Path, env: dict | None = None):
    with open(log, "wb") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


@contextmanager
def redis_server(tmp: Path):
    exe = require("redis-server", "redis-server")
    port = free_port()
    with process([exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                  "--dir", str(tmp)], tmp / "redis.log"):
        wait_port(port)
        yield f"redis://127.0.0.1:{port}/0"


@contextmanager
def storescp(tmp: Path, ae_title: str = "PACS"):
    exe = require("storescp", "dcmtk")
    port = free_port()
    out = tmp / "pacs-received"
    out.mkdir()
    env = child_environment(TCP_NODELAY="1")
    with process([exe, "--aetitle", ae_title, "--output-directory", str(out), "+xa", str(port)],
                 tmp / "storescp.log", env):
        wait_port(port)
        yield port, out


def pacs_received(folder: Path, *, while_receiving: bool = True) -> list[tuple[Path, pydicom.Dataset]]:
    """(file, header) of each object storescp has written into ``folder``.

    storescp writes an object under its final name while it receives it: a poll
    (``while_receiving``) can meet a file that is still short, which is skipped here and read at
    the next poll. A test's final checks, after the analysis and its deliveries ended, pass
    ``while_receiving=False``: every file must then parse."""
    out: list[tuple[Path, pydicom.Dataset]] = []
    for f in sorted(folder.rglob("*")):
        if not f.is_file():
            continue
        try:
            out.append((f, pydicom.dcmread(f, stop_before_pixels=True)))
        except (pydicom.errors.InvalidDicomError, EOFError, OSError):
            if not while_receiving:
                raise
    return out


def storescu(folder: Path, port: int, calling: str = "PACS", called: str = "FOLLOWUP") -> subprocess.CompletedProcess:
    exe = require("storescu", "dcmtk")
    env = child_environment(TCP_NODELAY="1")
    return subprocess.run([exe, "-aet", calling, "-aec", called, "+sd", "+r", "-xs", "127.0.0.1", str(port),
                           str(folder)], capture_output=True, text=True, env=env, timeout=300)
