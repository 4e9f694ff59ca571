#!/usr/bin/env bash
# The OHIF viewer's built web app for the viewer's browser test (tests/browser/test_viewer.py):
# the npm package @ohif/app ships it in dist/ (index.html and its bundles). Pinned by version and
# by the registry's sha512 integrity (checked here); fetched with npm's own client (npm pack), and
# only its dist/ is unpacked into .viewer/ohif-<version>/ (git-ignored). Its 39 run-time
# dependencies are build-time ones for a ready-built app, so no npm install. Never fails the
# build: the test skips, saying so, where the viewer is missing.
set -u
version=3.13.2
integrity="sha512-WZdxmpmG7rqFgW9ZJLcbgr3XCtLi1KDNPoMaeY5PPe6j4G4fjEjjkycZM6C6Zk2F87BKxFfpq+jd5xXZB9E8EA=="
root=$(cd "$(dirname "$0")/.." && pwd)
dest="$root/.viewer/ohif-$version"
[ -f "$dest/dist/index.html" ] && exit 0
command -v npm >/dev/null 2>&1 || { echo "warning: npm missing: the OHIF viewer test will be skipped" >&2; exit 0; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
if ! (cd "$tmp" && npm pack --silent "@ohif/app@$version" >/dev/null 2>&1); then
  echo "warning: could not fetch @ohif/app@$version: the OHIF viewer test will be skipped" >&2
  exit 0
fi
tgz=$(ls "$tmp"/*.tgz)
got="sha512-$(openssl dgst -sha512 -binary "$tgz" | base64 -w0)"
if [ "$got" != "$integrity" ]; then
  echo "warning: @ohif/app@$version does not match its pinned integrity: not installed" >&2
  exit 0
fi
mkdir -p "$tmp/x" && tar -xzf "$tgz" -C "$tmp/x" package/dist package/LICENSE \
  && mkdir -p "$root/.viewer" && rm -rf "$dest" && mv "$tmp/x/package" "$dest" \
  || echo "warning: could not unpack @ohif/app@$version: the OHIF viewer test will be skipped" >&2
exit 0
