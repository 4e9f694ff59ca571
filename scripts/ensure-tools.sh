#!/usr/bin/env bash
# Install the command-line tools the tests use (dcmtk: storescu/dsrdump; dicom3tools: dciodvfy;
# poppler-utils: pdftoppm to look at PDF reports; redis-server: the service tests start their
# own broker; docker-compose: validates docker-compose.yml;
# orthanc: the demo PACS of the auto-routing test; orthanc-dicomweb: its DICOMweb plugin (STOW-RS,
# QIDO-RS, WADO-RS tests); stunnel4: TLS in front of it (Debian's Orthanc crashes on its own
# HTTPS); nginx and npm: the OHIF viewer's browser test (nginx serves the app that
# scripts/ensure-viewer.sh fetches with npm, and proxies its DICOMweb to Orthanc); chromium: the browser the web page's tests drive through Playwright, tests/browser/)
# when they are missing. Never fails the build: tests that need a
# missing tool skip with a loud reason.
set -u
need=()
command -v dciodvfy >/dev/null 2>&1 || need+=(dicom3tools)
command -v storescu >/dev/null 2>&1 || need+=(dcmtk)
command -v pdftoppm >/dev/null 2>&1 || need+=(poppler-utils)
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v Orthanc >/dev/null 2>&1 || need+=(orthanc)
[ -e /usr/share/orthanc/plugins/libOrthancDicomWeb.so ] || need+=(orthanc-dicomweb)
command -v stunnel4 >/dev/null 2>&1 || need+=(stunnel4)
command -v nginx >/dev/null 2>&1 || need+=(nginx)
command -v npm >/dev/null 2>&1 || need+=(npm)
{ command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; } || need+=(chromium)
{ docker compose version >/dev/null 2>&1 || command -v docker-compose >/dev/null 2>&1; } || need+=(docker-compose)
[ ${#need[@]} -eq 0 ] && exit 0
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
exit 0
