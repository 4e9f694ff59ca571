"""The web page served at ``GET /``: self-contained (no external assets), no data of its own.

It asks for the user's token (kept in sessionStorage, this tab only), shows who it signs in as
(``GET /me``: the name the "reviewed" marks carry), then shows, through the API and with that token:

* ``#/patients``: the patient list, searched in the registry (``POST /patients/search``);
* ``#/patient/<patient_ref>``: the procedure record, the probabilities over time, every study in
  date order with its state, probability, recommendations and key images;
* ``#/report/<analysis id>``: the HTML report inside the page, its files to download, the
  algorithm version and revision, the study's other revisions, and an "Open the study in the image
  viewer" link when FOLLOWUP_VIEWER_URL is set (only the Study Instance UID goes into it; it opens
  in a new tab with no referrer);
* ``#/batches`` and ``#/batch/<id>``: reanalysis batches and, per batch, the results that changed
  (old beside new) with a stored "reviewed" mark;
* ``#/studies``: every study, as the service sees them.

Images (key images) are fetched with the token and shown from object URLs (``blob:``); the
report's HTML comes from ``/analyses/{id}/report-view`` (no script, its style attributes renamed
``data-style``), is placed in a shadow root and styled through the CSSOM, so the page's
Content-Security-Policy (built by the application from the hashes of the one <script> and the one
<style>) needs no ``unsafe-inline`` and reports no violation. Keep it so when editing: no inline
handlers, no style attributes.

The page is kept as three files in ``static/`` (``page.html`` with ``{{css}}`` and ``{{js}}`` where
``page.css`` and ``page.js`` go): one document, its style and script inline, made once at import.
"""

from importlib.resources import files

_STATIC = files("followup.api") / "static"


def _page() -> str:
    shell = (_STATIC / "page.html").read_text(encoding="utf-8")
    css = (_STATIC / "page.css").read_text(encoding="utf-8")
    js = (_STATIC / "page.js").read_text(encoding="utf-8")
    return shell.replace("{{css}}\n", css).replace("{{js}}\n", js)


PAGE_HTML = _page()

# The page's icon (answered at /favicon.svg and /favicon.ico, so no browser request ends in a 404).
FAVICON_SVG = (_STATIC / "favicon.svg").read_text(encoding="utf-8")
