"""Real DICOMweb servers for tests: Orthanc with its DICOMweb plugin (Debian packages orthanc and
orthanc-dicomweb), stunnel in front of it for https (Debian's Orthanc 1.10.1 crashes on its own
HTTPS), and the OHIF viewer's built app served by nginx on the same origin as Orthanc's
DICOMweb (as OHIF's own deployments put a proxy in front). Each starts on 127.0.0.1 only and is
stopped when its ``with`` block ends; a missing tool skips the calling test, saying so."""

from __future__ import annotations

import base64
import json
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

from followup.testing.service_harness import free_port, process, require, wait_port

DICOMWEB_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")  # Debian package orthanc-dicomweb
OHIF_VERSION = "3.13.2"
# installed by scripts/ensure-viewer.sh
OHIF_DIST = Path(__file__).resolve().parents[2] / ".viewer" / f"ohif-{OHIF_VERSION}" / "dist"


def _skip(reason: str) -> None:
    import pytest  # only a test gets here

    pytest.skip(reason)


@contextmanager
def orthanc_dicomweb(tmp_path: Path, *, users: dict[str, str] | None = None) -> Iterator[tuple[str, str]]:
    """Orthanc with its DICOMweb plugin (HTTP basic for ``users`` when given); yields (DICOMweb
    base URL, REST base URL)."""
    orthanc = require("Orthanc", "orthanc")
    if not DICOMWEB_PLUGIN.exists():
        _skip(f"{DICOMWEB_PLUGIN} (Debian package orthanc-dicomweb) is not installed: this check did NOT run")
    http_port = free_port()
    config = {"Name": "PACS", "DicomAet": "PACS", "DicomPort": free_port(), "HttpPort": http_port,
              "StorageDirectory": str(tmp_path / "orthanc-db"), "IndexDirectory": str(tmp_path / "orthanc-db"),
              "RemoteAccessAllowed": False, "AuthenticationEnabled": bool(users), "RegisteredUsers": users or {},
              "Plugins": [str(DICOMWEB_PLUGIN)], "DicomWeb": {"Enable": True, "Root": "/dicom-web/"}}
    (tmp_path / "orthanc.json").write_text(json.dumps(config))
    with process([orthanc, str(tmp_path / "orthanc.json")], tmp_path / "orthanc.log"):
        wait_port(http_port)
        yield f"http://127.0.0.1:{http_port}/dicom-web", f"http://127.0.0.1:{http_port}"


@contextmanager
def tls_in_front(tmp_path: Path, http_url: str, cert: Path, key: Path) -> Iterator[str]:
    """stunnel serving https with ``cert`` in front of ``http_url``; yields the https URL."""
    stunnel = require("stunnel4", "stunnel4")
    parts = urlsplit(http_url)
    port = free_port()
    conf = tmp_path / "stunnel.conf"
    conf.write_text(f"foreground = yes\npid =\n[dicomweb]\naccept = 127.0.0.1:{port}\n"
                    f"connect = 127.0.0.1:{parts.port}\ncert = {cert}\nkey = {key}\n")
    with process([stunnel, str(conf)], tmp_path / "stunnel.log"):
        wait_port(port)
        yield f"https://127.0.0.1:{port}{parts.path}"


def rest(base: str, path: str, data: bytes | None = None, auth: tuple[str, str] | None = None):
    """Orthanc's REST answer (JSON) to a GET, or to a POST of ``data``."""
    req = urllib.request.Request(base + path, data=data, method="POST" if data is not None else "GET")
    if auth:
        req.add_header("Authorization", "Basic " + base64.b64encode(":".join(auth).encode()).decode())
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())


def upload(base: str, folder: Path) -> None:
    """Put a folder's DICOM files into Orthanc through its REST API (not through our code)."""
    for f in sorted(folder.glob("*.dcm")):
        rest(base, "/instances", f.read_bytes())


OHIF_CONFIG = """window.config = {
  routerBasename: '/',
  showStudyList: true,
  extensions: [],
  modes: [],
  showWarningMessageForCrossOrigin: false,
  showCPUFallbackMessage: false,
  investigationalUseDialog: { option: 'never' },
  dataSources: [{
    namespace: '@ohif/extension-default.dataSourcesModule.dicomweb',
    sourceName: 'dicomweb',
    configuration: {
      friendlyName: 'Orthanc DICOMweb', name: 'orthanc',
      wadoUriRoot: '/dicom-web', qidoRoot: '/dicom-web', wadoRoot: '/dicom-web',
      qidoSupportsIncludeField: false, supportsReject: false,
      imageRendering: 'wadors', thumbnailRendering: 'wadors',
      enableStudyLazyLoad: true, supportsFuzzyMatching: false, supportsWildcard: true,
      staticWado: true, singlepart: 'bulkdata', bulkDataURI: { enabled: true },
    },
  }],
  defaultDataSourceName: 'dicomweb',
};
"""


@contextmanager
def ohif_viewer(tmp_path: Path, dicomweb_url: str) -> Iterator[str]:
    """OHIF (``OHIF_DIST``) served by nginx, reading ``dicomweb_url`` through ``/dicom-web`` on the
    same origin; yields the viewer's base URL (open ``{base}/viewer?StudyInstanceUIDs=UID``). The
    proxy passes the browser's Host on, so that the bulk-data URIs Orthanc writes into its answers
    point at the proxy too (not at Orthanc's own port, which CORS would refuse)."""
    nginx = require("nginx", "nginx")
    if not (OHIF_DIST / "index.html").is_file():
        _skip(f"the OHIF viewer ({OHIF_DIST}) is not installed (scripts/ensure-viewer.sh): this check did NOT run")
    work = tmp_path / "nginx"
    work.mkdir()
    port = free_port()
    temp = " ".join(f"{k}_temp_path {work / k};" for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    # nginx's workers drop root for an unprivileged user that cannot read a test's private tmp
    # directory: the app's configuration is answered from nginx.conf itself (read by the master),
    # and proxied answers are not buffered to temporary files.
    config = " ".join(OHIF_CONFIG.split())
    (work / "nginx.conf").write_text(f"""daemon off;
pid {work / 'nginx.pid'};
error_log {work / 'error.log'};
events {{}}
http {{
  include /etc/nginx/mime.types;
  types {{ application/wasm wasm; }}
  access_log {work / 'access.log'};
  {temp}
  server {{
    listen 127.0.0.1:{port};
    root {OHIF_DIST};
    location = /app-config.js {{ default_type application/javascript; return 200 "{config}"; }}
    location /dicom-web/ {{
      proxy_pass {dicomweb_url.rstrip('/')}/; proxy_set_header Host $http_host;
      proxy_buffering off; proxy_max_temp_file_size 0;
    }}
    location / {{ try_files $uri $uri/ /index.html; }}
  }}
}}
""")
    with process([nginx, "-c", str(work / "nginx.conf")], work / "nginx.out"):
        wait_port(port)
        yield f"http://127.0.0.1:{port}"


__all__ = ["DICOMWEB_PLUGIN", "OHIF_DIST", "ohif_viewer", "orthanc_dicomweb", "rest", "tls_in_front", "upload"]
