"""docker-compose.yml: the deployment's services (redis, postgres, the listener, workers, API,
flower, Orthanc with DICOMweb and the OHIF viewer) as docker compose reads them."""

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


# --- secure by default (issue 22, F7) -------------------------------------------------------------
# Read as YAML (docker may be absent): what is published, and with which TLS settings.

CERTS = "./deploy/demo-certs"


def _compose() -> dict:
    yaml = pytest.importorskip("yaml")
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def _published(service: dict) -> list[tuple[str, int]]:
    """(host address, host port) of each published port; no address means every interface."""
    out = []
    for spec in service.get("ports", []):
        parts = str(spec).split(":")
        address = parts[0] if len(parts) == 3 else "0.0.0.0"
        out.append((address, int(parts[-2])))
    return out


def test_compose_publishes_no_plain_http_api_and_no_flower():
    services = _compose()["services"]
    assert "ports" not in services["flower"]  # Flower: no authentication; not published
    api = services["api"]
    env = api["environment"]
    assert env["FOLLOWUP_API_TLS_CERT"] and env["FOLLOWUP_API_TLS_KEY"]  # serve-api speaks HTTPS only
    assert _published(api) == [("0.0.0.0", 8443)] and "--port" in api["command"]
    assert api["command"][api["command"].index("--port") + 1] == "8443"
    for name, service in services.items():  # no service publishes the old plain-HTTP port
        assert all(port not in (8080, 5555) for _, port in _published(service)), name
    # The demo PACS's own ports (its web UI has no login) stay on this host.
    assert {a for a, _ in _published(services["orthanc"])} == {"127.0.0.1"}


def test_compose_dicom_tls_is_on_both_ways_with_client_certificates():
    services = _compose()["services"]
    env = services["dicom"]["environment"]
    assert env["FOLLOWUP_TLS_CERT"] and env["FOLLOWUP_TLS_KEY"] and env["FOLLOWUP_TLS_CA"]
    assert env["FOLLOWUP_DESTINATION"].endswith("/tls")
    cmd = services["dicom"]["command"]
    assert cmd[cmd.index("--destination") + 1].endswith("/tls")
    orthanc = services["orthanc"]["environment"]
    assert orthanc["ORTHANC__DICOM_TLS_ENABLED"] == "true"
    assert orthanc["ORTHANC__DICOM_TLS_REMOTE_CERTIFICATE_REQUIRED"] == "true"
    assert '"UseDicomTls": true' in orthanc["ORTHANC__DICOM_MODALITIES"]
    for name in ("dicom", "api", "worker-realtime", "orthanc"):
        assert f"{CERTS}:/certs:ro" in services[name]["volumes"], name


def test_compose_settings_pass_check_config_with_the_demo_certificates(tmp_path, monkeypatch):
    """The services' environment, with the certificates scripts/make-demo-certs.sh makes, gives
    no finding of `followup check-config` for the listener, the API and the workers."""
    from followup.config import Settings
    from followup.config_check import insecure_settings
    from followup.testing.service_harness import require

    require("openssl", "openssl")
    certs = tmp_path / "certs"
    res = subprocess.run(["bash", str(ROOT / "scripts" / "make-demo-certs.sh"), str(certs)], capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    services = _compose()["services"]
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    for name, role in (("dicom", "dicom"), ("api", "api"), ("worker-realtime", "worker")):
        env = {k: str(v) for k, v in services[name]["environment"].items()}
        for key, value in env.items():
            if value.startswith("/certs/"):
                path = certs / value.removeprefix("/certs/")
                assert path.is_file(), f"{key}: make-demo-certs.sh makes no {path.name}"
                env[key] = str(path)
        env.update(FOLLOWUP_DATA_DIR=str(data), FOLLOWUP_API_TOKEN="Strong-Token-0123456789-abcdefghijKLMNOPQRSTU",
                   FOLLOWUP_DB_URL=f"sqlite:///{data}/followup.db")
        for key in [k for k in os.environ if k.startswith("FOLLOWUP_")]:
            monkeypatch.delenv(key)
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        host = "0.0.0.0"  # the containers listen on every interface of their own network
        settings = Settings.from_env(api_host=host, dicom_host=host)
        assert [str(f) for f in insecure_settings(settings, role)] == [], name


def test_compose_runs_orthanc_with_dicomweb_and_ohif_and_links_the_page_to_it():
    """Orthanc serves DICOMweb and OHIF on it; the API's viewer link opens OHIF there on the study
    (its Study Instance UID only), on the port Orthanc publishes to this host."""
    from followup.config import Settings, viewer_link

    services = _compose()["services"]
    orthanc = services["orthanc"]["environment"]
    assert orthanc["DICOM_WEB_PLUGIN_ENABLED"] == "true" and orthanc["OHIF_PLUGIN_ENABLED"] == "true"
    assert orthanc["ORTHANC__OHIF__DATA_SOURCE"] == "dicom-web"
    template = services["api"]["environment"]["FOLLOWUP_VIEWER_URL"]
    Settings(viewer_url=template)  # a valid template
    url = viewer_link(template, "1.2.840.99.1")
    assert url == "http://localhost:8042/ohif/viewer?StudyInstanceUIDs=1.2.840.99.1"
    assert ("127.0.0.1", 8042) in _published(services["orthanc"])
