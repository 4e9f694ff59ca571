"""``/analyses/{id}``: one analysis's report for the page (what made it, its files, its key images,
the study's other revisions), its files to download and its key images, served from inside the
data directory only.

Key images are the PNGs inlined in ``report.html``. A report directory never changes once
written, so an image is answered with an ETag and ``Cache-Control: private, max-age=86400,
immutable`` (the browser keeps it; a shared cache does not), and ``If-None-Match`` gets 304. The
token rule is the same as for every data route: the page fetches images with its token and shows
them from object URLs.
"""

from __future__ import annotations

from fastapi import Header, HTTPException, Response, status
from fastapi.responses import FileResponse

from followup.api import report_files
from followup.api.dependencies import AuditDep, DataRootDep, RegistryDep, RowId, SettingsDep, protected_router
from followup.api.models import AnalysisView, ErrorOut, FileOut, ReportFragment
from followup.api.report_files import REPORT_CSP
from followup.api.views import key_images_out, revision_out
from followup.config import viewer_link
from followup.pseudonym import patient_ref
from followup.service.patients import person_name
from followup.service.registry import Analysis, Registry
from followup.service.store import valid_uid

router = protected_router(tags=["analyses"])

IMAGE_CACHE = "private, max-age=86400, immutable"
NOT_FOUND: dict[int | str, dict] = {404: {"model": ErrorOut}}


def _analysis(registry: Registry, analysis_id: int) -> Analysis:
    a = registry.analysis(analysis_id)
    if a is None or not valid_uid(a.study_uid):
        raise HTTPException(status.HTTP_404_NOT_FOUND, "unknown analysis")
    return a


def _record(auditor, registry: Registry, a: Analysis, action: str, detail: str) -> None:
    st = registry.study(a.study_uid)
    auditor.record(action, study_uid=a.study_uid, patient_ref=patient_ref(st.patient_id or "") if st else None,
                   detail=detail)


@router.get("/analyses/{analysis_id}", response_model=AnalysisView, responses=NOT_FOUND)
def analysis_view(analysis_id: RowId, registry: RegistryDep, data_root: DataRootDep,
                  auditor: AuditDep, settings: SettingsDep) -> AnalysisView:
    a = _analysis(registry, analysis_id)
    _record(auditor, registry, a, "analysis.read", f"analysis {a.id}")
    st = registry.study(a.study_uid)
    directory = report_files.report_dir(a, data_root)
    report = report_files.report_json(directory)
    algorithm = (report or {}).get("algorithm") or {}
    supersedes = (report or {}).get("supersedes") or {}
    files = [FileOut(name=n, media_type=m, description=d, size=size, url=f"analyses/{a.id}/files/{n}")
             for n, m, d, size in report_files.downloads(directory, report)]
    html = directory is not None and report_files.inside(directory, "report.html") is not None
    return AnalysisView(
        analysis=revision_out(a), study_uid=a.study_uid, study_date=st.study_date if st else None,
        accession_number=(st.accession_number or "") if st else "",
        patient_ref=patient_ref(st.patient_id or "") if st else "",
        patient_name=person_name(st.patient_name) if st else "",
        algorithm_name=algorithm.get("name") if isinstance(algorithm, dict) else None,
        report_created=str(report.get("created")) if report and report.get("created") else None,
        supersedes_revision=supersedes.get("revision") if isinstance(supersedes, dict) else None,
        html_url=f"analyses/{a.id}/report-view" if html else None, files=files,
        key_images=key_images_out(a, directory),
        revisions=[revision_out(x) for x in reversed(registry.analyses(study_uid=a.study_uid))],
        viewer_url=viewer_link(settings.viewer_url, a.study_uid))


@router.get("/analyses/{analysis_id}/report-view", response_model=ReportFragment, responses=NOT_FOUND)
def report_view(analysis_id: RowId, registry: RegistryDep, data_root: DataRootDep,
                auditor: AuditDep) -> ReportFragment:
    """``report.html`` made ready to sit inside the page (``report_files.report_fragment``): its
    stylesheet and its body through an allow-list sanitizer, style attributes as ``data-style``."""
    a = _analysis(registry, analysis_id)
    _record(auditor, registry, a, "report.fragment", f"analysis {a.id}")
    fragment = report_files.report_fragment(report_files.report_dir(a, data_root))
    if fragment is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no HTML report for this analysis")
    return ReportFragment(css=fragment[0], body=fragment[1])


@router.get("/analyses/{analysis_id}/files/{name}", response_class=FileResponse,
            responses={200: {"description": "the file", "content": {"application/dicom": {}, "application/pdf": {}}},
                       **NOT_FOUND})
def analysis_file(analysis_id: RowId, name: str, registry: RegistryDep, data_root: DataRootDep,
                  auditor: AuditDep) -> FileResponse:
    """One file of the analysis's report directory (report, FHIR, DICOM SR/SEG/Encapsulated PDF),
    resolved and served only from inside that directory (no symlink out of it); ``report.html``
    with a Content-Security-Policy that lets nothing run or load."""
    a = _analysis(registry, analysis_id)
    _record(auditor, registry, a, "file.read", f"analysis {a.id}: {name[:100]}")
    directory = report_files.report_dir(a, data_root)
    found = report_files.download_path(directory, report_files.report_json(directory), name)
    if found is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such file for this analysis")
    path, media_type = found
    inline = name.endswith((".html", ".pdf", ".json"))
    return FileResponse(path, media_type=media_type,
                        filename=f"followup-{a.study_uid}-{a.algorithm_version}-r{a.revision}-{name}",
                        content_disposition_type="inline" if inline else "attachment",
                        headers={"Content-Security-Policy": REPORT_CSP} if name.endswith(".html") else None)


@router.get("/analyses/{analysis_id}/key-images/{index}.png", response_class=Response,
            responses={200: {"content": {"image/png": {}}}, 304: {"description": "not modified"}, **NOT_FOUND})
def key_image(analysis_id: RowId, index: int, registry: RegistryDep, data_root: DataRootDep, auditor: AuditDep,
              if_none_match: str | None = Header(None)) -> Response:
    a = _analysis(registry, analysis_id)
    _record(auditor, registry, a, "image.read", f"analysis {a.id}: key image {index}")
    images = report_files.key_images(report_files.report_dir(a, data_root))
    if not 0 <= index < len(images):
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such key image")
    img = images[index]
    headers = {"Cache-Control": IMAGE_CACHE, "ETag": img.etag}
    if if_none_match is not None and img.etag in [t.strip() for t in if_none_match.split(",")]:
        return Response(status_code=status.HTTP_304_NOT_MODIFIED, headers=headers)
    return Response(img.png, media_type="image/png", headers=headers)
