"""The words of the readable reports, shared by the HTML and PDF renderers so they never differ:
rows of (label, text) built from the finished :class:`~followup.reporting.model.Report`."""

from __future__ import annotations

from followup.reporting.model import Findings, Report


def person_name(dicom_pn: str) -> str:
    """A DICOM PN (``FAMILY^GIVEN^MIDDLE^PREFIX^SUFFIX``, '=' between representations) as people
    write it: ``FAMILY, Given Middle`` (the first, alphabetic, representation only)."""
    parts = [p.strip() for p in (dicom_pn or "").split("=")[0].split("^")]
    family, given = [*parts, "", ""][:2]
    rest = " ".join(p for p in [given, *parts[2:3]] if p)
    return f"{family}, {rest}" if family and rest else (family or rest)


def iso_date(dicom_da: str | None) -> str:
    """A DICOM DA (``YYYYMMDD``) as an ISO date; anything else unchanged."""
    d = (dicom_da or "").strip()
    return f"{d[:4]}-{d[4:6]}-{d[6:8]}" if len(d) == 8 and d.isdigit() else d


def identity_cells(r: Report) -> list[tuple[str, str]]:
    pt, fu, proc = r.patient, r.studies.followup, r.procedure
    bl = r.studies.baseline
    lesion = proc.lesion
    procedure_date = proc.procedure_date.isoformat()
    return [
        ("Patient", person_name(pt.name)), ("Patient ID", pt.id), ("Birth date", iso_date(pt.birth_date)),
        ("Sex", pt.sex),
        ("Follow-up study", iso_date(fu.study_date) if fu else "-"),
        ("Accession", (fu.accession_number or "") if fu else "-"),
        ("Procedure", f"{procedure_date} ({r.days_since_procedure} days before)"
         if r.days_since_procedure is not None else procedure_date),
        ("Baseline study", iso_date(bl.study_date) if bl else "not available"),
        ("Side", {"L": "left", "R": "right"}.get(proc.laterality, proc.laterality)),
        ("Tumour", f"{lesion.diameter_mm:g} mm {lesion.histology}, grade {lesion.grade}"),
        ("In-situ component", f"{lesion.dcis_component_pct:g}%"
         + (f" ({lesion.insitu_grade} grade)" if lesion.insitu_grade else "")),
        ("Freeze-thaw cycles / margin", f"{proc.freeze_thaw_cycles} / {proc.margin_mm:g} mm"),
    ]


def zone_and_rim_rows(findings: Findings) -> list[tuple[str, str]]:
    z, rim = findings.ablation_zone, findings.rim
    return [
        ("Ablation zone", f"{z.volume_ml:.1f} ml; axes {' x '.join(f'{a:.0f}' for a in z.axes_mm)} mm; "
                          + (z.location.text if z.location is not None else
                             f"centre LPS ({', '.join(f'{v:.0f}' for v in z.center_lps_mm)}) mm")),
        ("Covers tumour + margin", ("yes" if z.covers_tumour_plus_margin else "NO")
         + f" (smallest margin {z.smallest_margin_mm:.1f} mm; target {z.margin_mm:g} mm)"),
        ("Rim", f"{rim.thickness_mm:.1f} mm (90th percentile {rim.thickness_p90_mm:.1f} mm), "
                f"{'uniform' if rim.uniform else 'irregular'}; {rim.initial_phase} initial enhancement "
                f"({rim.initial_enhancement_pct:.0f}%), {rim.curve_type} "
                f"({rim.delayed_change_pct:+.0f}%)"
         + (" - benign pattern (thin, slow, persistent)" if rim.benign_pattern else "")),
    ]


def supersedes_text(r: Report) -> str | None:
    """One sentence naming the earlier report this one replaces (None for a first report)."""
    sup = r.supersedes
    if sup is None:
        return None
    when = f" of {sup.created}" if sup.created else ""
    version = "" if sup.algorithm_version == r.algorithm.version else f" (version {sup.algorithm_version})"
    added = (f"; {len(sup.series_added)} series received after it included" if sup.series_added
             else "; no series added (reanalysis)")
    sr = sup.outputs.get("sr")
    return (f"This report (revision {r.revision}) supersedes revision {sup.revision}{version}{when}"
            f"{added}. Earlier SR: {sr.sop_instance_uid if sr else '-'}.")


def technical_rows(r: Report) -> list[tuple[str, str]]:
    reg = r.registration
    rows = []
    if reg:
        rows.append(("Registration", f"{reg.method}; quality {reg.quality.upper()}"
                     + (f" ({'; '.join(reg.quality_reasons)})" if reg.quality_reasons else "")))
        before, after = reg.similarity_before, reg.similarity_after
        rows.append(("Similarity before / after", f"MI {before.mutual_information:.2f} / "
                     f"{after.mutual_information:.2f}; NCC around the lesion "
                     f"{before.local_ncc:.2f} / {after.local_ncc:.2f}"))
        followup = reg.tumour_center_followup_lps_mm
        rows.append(("Tumour centre", f"baseline LPS {list(reg.tumour_center_baseline_lps_mm)} mm -> "
                     f"follow-up LPS {list(followup) if followup is not None else None} mm"))
    f = r.findings
    if f and f.motion_correction:
        moved = [m for m in f.motion_correction if m.realigned]
        rows.append(("Within-study motion", ", ".join(
            f"phase {m.phase}: {m.shift_mm:.1f} mm" for m in moved) + " realigned" if moved
            else "no phase moved by more than 0.5 mm"))
    for name, s in (("followup", r.studies.followup), ("baseline", r.studies.baseline)):
        if s:
            rows.append((f"{name.capitalize()} DCE", f"{s.series_description!s}: {s.phases} phases "
                         f"ordered by {s.phase_ordering}; study {s.study_instance_uid}"))
    for w in r.warnings:
        rows.append(("Warning", w))
    rows.append(("Algorithm", f"{r.algorithm.name} {r.algorithm.version}; report created {r.created}; "
                 f"revision {r.revision}"))
    if r.supersedes is not None:
        rows.append(("Supersedes", f"revision {r.supersedes.revision}; series added: "
                     + (", ".join(r.supersedes.series_added) or "none")))
    return rows


def answer_style(r: Report) -> str:
    """The answer box's style: ``low`` (calm, green) only for BI-RADS 2 or 3 (<= 2 %); ``mid`` for
    4A/4B, ``high`` for 4C/5; ``none`` without a probability. Never calm above 2 %."""
    b = r.birads
    if r.status != "complete" or r.residual_probability is None or b is None or b.category == "0":
        return "none"
    if b.category in ("2", "3"):
        return "low"
    return "high" if b.category in ("4C", "5") else "mid"


def disease_words(r: Report) -> str:
    """What the probability is about, in words: residual, or residual or recurrent, disease."""
    return ("residual or recurrent" if r.question == "recurrence" else "residual") + " disease"


def answer_title(r: Report) -> str:
    return f"Probability of {disease_words(r)} (invasive or in situ) at the ablation site"


def birads_line(r: Report) -> str | None:
    b = r.birads
    if b is None:
        return None
    return f"BI-RADS {b.category}: {b.label}. {b.management}"


def interval_sentence(r: Report) -> str:
    return (f"The interval is {r.interval_kind or 'model-based'}: it combines the published figures' own "
            "uncertainty with the choice between sources that disagree; figures marked 'assumption' are "
            "not published (see the drivers below).")


def contraindication_lines(r: Report) -> list[str]:
    return [c.text for c in r.contraindications]


# --- technique, comparison, what is not assessed (issue 24) ------------------------------------

NO_TECHNIQUE = "not stated in the DICOM headers"


def technique_text(r: Report) -> str:
    """The technique line, or that the headers do not state it."""
    return (r.technique.sentence if r.technique is not None else "") or NO_TECHNIQUE


def reading_rows(r: Report) -> list[tuple[str, str]]:
    """Technique, comparison and what this analysis does not assess: the rows every readable
    report shows (HTML, PDF), whatever the status."""
    rows = [("Technique", technique_text(r))]
    if r.comparison is not None:
        rows.append(("Comparison", r.comparison.sentence))
    if r.not_assessed:
        rows.append(("Not assessed", r.not_assessed))
    return rows
