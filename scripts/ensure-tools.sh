#!/usr/bin/env bash
# Install the command-line tools the tests use (dcmtk: storescu/dsrdump; dicom3tools: dciodvfy;
# poppler-utils: pdftoppm to look at PDF reports; redis-server: the service tests start their
# own broker; docker-compose: validates docker-compose.yml;
# orthanc: the demo PACS of the auto-routing test; orthanc-dicomweb: its DICOMweb plugin (STOW-RS,
# QIDO-RS, WADO-RS tests); stunnel4: TLS in front of it (Debian's Orthanc crashes on its own
# HTTPS); prometheus: promtool checks the alert rules and a real Prometheus scrapes the service's
# metrics (tests/integration/test_metrics.py); chromium: the browser the web page's tests drive
# through Playwright, tests/browser/; nodejs and npm: OHIF's libraries read our SR and SEG in
# tests/viewers, from tools/viewer-readers, installed here by `npm ci` from its committed
# package-lock.json; nginx: serves the OHIF app that scripts/ensure-viewer.sh fetches with npm,
# for the viewer's browser test) when they are missing. Never fails the build: tests that need a
# missing tool skip with a loud reason.
set -u
need=()
command -v dciodvfy >/dev/null 2>&1 || need+=(dicom3tools)
command -v storescu >/dev/null 2>&1 || need+=(dcmtk)
command -v pdftoppm >/dev/null 2>&1 || need+=(poppler-utils)
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v Orthanc >/dev/null 2>&1 || need+=(orthanc)
{ command -v promtool >/dev/null 2>&1 && command -v prometheus >/dev/null 2>&1; } || need+=(prometheus)
[ -e /usr/share/orthanc/plugins/libOrthancDicomWeb.so ] || need+=(orthanc-dicomweb)
command -v stunnel4 >/dev/null 2>&1 || need+=(stunnel4)
command -v nginx >/dev/null 2>&1 || need+=(nginx)
{ command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; } || need+=(chromium)
{ docker compose version >/dev/null 2>&1 || command -v docker-compose >/dev/null 2>&1; } || need+=(docker-compose)
command -v node >/dev/null 2>&1 || need+=(nodejs)
command -v npm >/dev/null 2>&1 || need+=(npm)

# OHIF's libraries (dcmjs, @cornerstonejs/adapters), pinned by tools/viewer-readers/package-lock.json
viewer_readers() {
  local dir
  dir="$(dirname "$0")/../tools/viewer-readers"
  command -v npm >/dev/null 2>&1 || { echo "warning: no npm; tests/viewers will be skipped" >&2; return; }
  if [ ! -f "$dir/node_modules/.package-lock.json" ] || [ "$dir/package-lock.json" -nt "$dir/node_modules/.package-lock.json" ]; then
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >/dev/null 2>&1) \
      || echo "warning: npm ci in tools/viewer-readers failed; tests/viewers will be skipped" >&2
  fi
}
[ ${#need[@]} -eq 0 ] && { viewer_readers; exit 0; }
SUDO=""
[ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1 && SUDO="sudo -n"
if command -v apt-get >/dev/null 2>&1; then
  echo "installing ${need[*]} (apt-get)" >&2
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get install -y -q "${need[@]}" >/dev/null 2>&1 \
    || { $SUDO apt-get update -q >/dev/null 2>&1 && $SUDO apt-get install -y -q "${need[@]}" >/dev/null 2>&1; } \
    || for pkg in "${need[@]}"; do  # one package this system lacks must not keep the others out
         $SUDO apt-get install -y -q "$pkg" >/dev/null 2>&1 \
           || echo "warning: could not install $pkg; tests needing it will be skipped" >&2
       done
else
  echo "warning: no apt-get; ${need[*]} missing; tests needing them will be skipped" >&2
fi
viewer_readers
exit 0
