"""F7 (issue 22): ``followup serve-api --tls-cert --tls-key`` serves HTTPS for real.

The demo certificates come from scripts/make-demo-certs.sh (openssl); uvicorn listens on
127.0.0.1. A client that trusts the demo CA gets its answers; one that does not, and one that
speaks plain HTTP to the port, get none. Without TLS the server logs check-config's finding."""

from __future__ import annotations

import http.client
import json
import ssl
import subprocess
import sys
import time
from pathlib import Path

import pytest

from followup.config import child_environment
from followup.testing.service_harness import free_port, process, require, wait_port

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "api-tls-Test-token-0123456789-abcdefXYZ"  # >= 128 bits (the API refuses weaker)

pytestmark = pytest.mark.slow  # each test starts `followup serve-api` (10-15 s on a loaded machine)


@pytest.fixture(scope="module")
def demo_certs(tmp_path_factory) -> Path:
    require("openssl", "openssl")
    out = tmp_path_factory.mktemp("certs") / "demo"
    res = subprocess.run(["bash", str(ROOT / "scripts" / "make-demo-certs.sh"), str(out)], capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert {p.name for p in out.iterdir()} == {"ca.pem", "ca.key", "followup.pem", "followup.key", "pacs.pem",
                                               "pacs.key"}
    return out


def _serve_api(tmp: Path, port: int, *extra: str):
    env = child_environment(FOLLOWUP_DATA_DIR=str(tmp / "data"), FOLLOWUP_API_TOKEN=TOKEN,
                            FOLLOWUP_REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")
    for k in ("FOLLOWUP_DB_URL", "FOLLOWUP_DESTINATION", "FOLLOWUP_RETRIEVE", "FOLLOWUP_API_TLS_CERT",
              "FOLLOWUP_API_TLS_KEY", "FOLLOWUP_API_HOST"):
        env.pop(k, None)
    cmd = [sys.executable, "-m", "followup.cli", "serve-api", "--host", "127.0.0.1", "--port", str(port), *extra]
    return process(cmd, tmp / "api.log", env)


def _get(conn: http.client.HTTPConnection, path: str, token: str | None = None) -> tuple[int, bytes]:
    conn.request("GET", path, headers={"Authorization": f"Bearer {token}"} if token else {})
    r = conn.getresponse()
    return r.status, r.read()


def _wait_https(port: int, ctx: ssl.SSLContext, timeout: float = 30.0) -> None:
    wait_port(port, timeout)
    deadline = time.time() + timeout
    while True:
        try:
            _get(http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=5), "/health")
            return
        except (OSError, http.client.HTTPException):
            if time.time() > deadline:
                raise
            time.sleep(0.2)


def test_serve_api_speaks_https_with_the_demo_certificate(tmp_path, demo_certs):
    port = free_port()
    trusting = ssl.create_default_context(cafile=str(demo_certs / "ca.pem"))
    with _serve_api(tmp_path, port, "--tls-cert", str(demo_certs / "followup.pem"),
                    "--tls-key", str(demo_certs / "followup.key")) as proc:
        _wait_https(port, trusting)
        # HTTPS, verified against the demo CA and the name 127.0.0.1 in the certificate
        conn = http.client.HTTPSConnection("127.0.0.1", port, context=trusting, timeout=10)
        assert _get(conn, "/health")[0] == 200
        status, body = _get(conn, "/studies", TOKEN)
        assert status == 200 and json.loads(body) == []
        assert conn.sock.version() in ("TLSv1.2", "TLSv1.3")
        # A client that does not trust the demo CA refuses the server.
        with pytest.raises(ssl.SSLCertVerificationError):
            _get(http.client.HTTPSConnection("127.0.0.1", port, context=ssl.create_default_context(),
                                             timeout=10), "/health")
        # Plain HTTP to the same port gets no answer.
        with pytest.raises((http.client.HTTPException, ConnectionError, OSError)):
            _get(http.client.HTTPConnection("127.0.0.1", port, timeout=10), "/health")
        assert proc.poll() is None
    log = (tmp_path / "api.log").read_text()
    assert "insecure setting" not in log, log
    assert "made a new patient-ref key" in log


def test_serve_api_without_tls_warns_at_start(tmp_path):
    port = free_port()
    with _serve_api(tmp_path, port):
        wait_port(port, 30)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        assert _get(conn, "/health")[0] == 200
    log = (tmp_path / "api.log").read_text()
    assert "WARNING followup.config_check: insecure setting: [api-no-tls]" in log, log


def test_serve_api_refuses_a_missing_certificate(tmp_path, demo_certs):
    res = subprocess.run([sys.executable, "-m", "followup.cli", "serve-api", "--tls-cert",
                          str(tmp_path / "nothing.pem"), "--tls-key", str(demo_certs / "followup.key")],
                         capture_output=True, text=True, timeout=60,
                         env=child_environment(FOLLOWUP_DATA_DIR=str(tmp_path / "d"), FOLLOWUP_API_TOKEN=TOKEN))
    assert res.returncode == 2 and "nothing.pem" in res.stderr and "not a readable file" in res.stderr
    res = subprocess.run([sys.executable, "-m", "followup.cli", "serve-api", "--tls-cert",
                          str(demo_certs / "followup.pem")], capture_output=True, text=True, timeout=60,
                         env=child_environment(FOLLOWUP_DATA_DIR=str(tmp_path / "d"), FOLLOWUP_API_TOKEN=TOKEN))
    assert res.returncode == 2 and "give both a certificate" in res.stderr
