"""docker-compose.yml: the deployment's services (redis, postgres, the listener, workers, API,
flower, Orthanc) as docker compose reads them."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_docker_compose_config_validates(tmp_path):
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        cmd = ["docker", "compose"]
    elif shutil.which("docker-compose"):
        cmd = ["docker-compose"]
    else:
        pytest.skip("neither `docker compose` nor docker-compose is installed: docker-compose.yml NOT validated")
    env = dict(os.environ, FOLLOWUP_API_TOKEN="compose-token-0123456789abcdef")
    res = subprocess.run([*cmd, "-f", "docker-compose.yml", "config", "--services"], capture_output=True,
                         text=True, env=env, cwd=ROOT)
    assert res.returncode == 0, res.stderr
    assert set(res.stdout.split()) >= {"redis", "postgres", "dicom", "worker-realtime", "worker-batch", "api",
                                       "flower", "orthanc"}
