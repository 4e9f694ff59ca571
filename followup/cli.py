"""The ``followup`` command line (typer)."""

from __future__ import annotations

import datetime as dt
import importlib
import json
import logging
import sys
import time
from enum import StrEnum
from pathlib import Path

import typer

from followup import __version__
from followup.errors import FollowupError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="followup: residual-tumour assessment on follow-up breast MRI after cryoablation.",
)


class Scenario(StrEnum):
    complete = "complete"
    residual = "residual"
    early = "early"
    confounder = "confounder"
    surveillance = "surveillance"  # baseline + 3-5 follow-ups (followup/synth/surveillance.py)


class Vendor(StrEnum):
    per_phase = "per-phase"
    single_series = "single-series"
    sagittal = "sagittal"


class Size(StrEnum):
    small = "small"
    full = "full"


def _fail(err: FollowupError) -> None:
    typer.secho(f"error [{err.code}]: {err.message}", err=True, fg=typer.colors.RED)
    raise typer.Exit(code=2)


@app.callback()
def main(
    ctx: typer.Context,
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log progress to stderr."),
    data_dir: Path | None = typer.Option(None, "--data-dir", show_default=False,
                                         help="Spool, store, quarantine, reports, SQLite file "
                                              "(env FOLLOWUP_DATA_DIR; default ./followup-data)."),
    db_url: str | None = typer.Option(None, "--db-url", show_default=False,
                                      help="SQLAlchemy URL (env FOLLOWUP_DB_URL; default: SQLite in the data dir)."),
    redis_url: str | None = typer.Option(None, "--redis-url", show_default=False,
                                         help="Celery broker (env FOLLOWUP_REDIS_URL; default "
                                              "redis://127.0.0.1:6379/0)."),
    api_token: str | None = typer.Option(None, "--api-token", show_default=False,
                                         help="Bearer token of the API (env FOLLOWUP_API_TOKEN)."),
) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    # pynetdicom logs a line per DIMSE message at INFO: noise at a PACS's rate (and time on the
    # receive path). Our listener logs one summary per association instead.
    logging.getLogger("pynetdicom").setLevel(logging.WARNING)
    # The options override the environment (read by followup.config alone); each command builds
    # its Settings from both (``_settings``) and passes it on, to workers too.
    ctx.obj = {"data_dir": data_dir, "db_url": db_url, "redis_url": redis_url, "api_token": api_token}


def _current_context():
    """The running command's context. typer >= 0.20 runs on its own copy of click
    (``typer._click``), whose context stack ``click.get_current_context`` does not see: without this
    the main options (``--data-dir``, ``--db-url``, ...) were silently ignored."""
    for module in ("typer._click.globals", "click.globals"):
        try:
            ctx = importlib.import_module(module).get_current_context(silent=True)
        except ImportError:
            continue
        if ctx is not None:
            return ctx
    return None


def _settings(**overrides):
    """The Settings of this command: its options, then the main options, then the environment."""
    from followup.config import Settings

    ctx = _current_context()
    options = dict((ctx.find_root().obj or {}) if ctx is not None else {})
    options.update(overrides)
    s = Settings.from_env(**options)
    s.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)  # images and reports: the owner's alone
    return s


def _warn_insecure(settings, role: str) -> None:
    """``check-config``'s findings that concern this server, one WARNING each, at its start."""
    from followup.config_check import insecure_settings

    log = logging.getLogger("followup.config_check")
    for finding in insecure_settings(settings, role):
        log.warning("insecure setting: %s", finding)


def _registry(settings):
    """The registry, with this process's patient-ref key checked against it and installed."""
    from followup.pseudonym import install_from_settings
    from followup.service.registry import Registry

    registry = Registry(settings.database_url)
    try:
        install_from_settings(settings, registry)
    except FollowupError as err:
        _fail(err)
    return registry


def _install_patient_ref_key(settings) -> None:
    """The patient-ref key of a command that opens no registry (inspect, worker)."""
    from followup.pseudonym import install_from_settings

    try:
        install_from_settings(settings)
    except FollowupError as err:
        _fail(err)


def _cli_actor() -> str:
    """Who runs this command, for the audit trail and the records it changes: ``cli:<login>``."""
    import getpass

    try:
        return f"cli:{getpass.getuser()}"
    except Exception:
        return "cli:unknown"


def _audit(registry, action: str, **kw) -> None:
    """A row of the audit trail for this command (``followup.service.audit``)."""
    from followup.service import audit

    audit.record(registry, _cli_actor(), action, role="admin", source="cli", **kw)


def _audit_batch_studies(registry, batch_id: int, study_uids: list[str] | None = None) -> None:
    """One ``batch.start`` row per study of the batch (its analyses', or ``study_uids``)."""
    from followup.pseudonym import patient_ref
    from followup.service import audit

    uids = study_uids if study_uids is not None else [a.study_uid for a in registry.analyses(batch_id=batch_id)]
    subjects = []
    for uid in uids:
        st = registry.study(uid)
        subjects.append((patient_ref(st.patient_id) if st else None, uid))
    audit.record_many(registry, _cli_actor(), "batch.start", subjects, role="admin", source="cli",
                      detail=f"batch {batch_id}")


def _work_queue(settings, registry):
    """The composition root's one tie to ``workers``: the Celery queue, configured with ``settings``."""
    from workers.tasks import celery_queue

    return celery_queue(settings, registry)


@app.command()
def version() -> None:
    """Print the product and algorithm version."""
    typer.echo(__version__)


@app.command()
def synth(
    out: Path = typer.Option(..., "--out", help="Output folder (baseline/, followup/, procedure.json, truth.json)."),
    scenario: Scenario = typer.Option(Scenario.complete, "--scenario"),
    seed: int = typer.Option(0, "--seed", min=0),
    vendor: Vendor | None = typer.Option(
        None, "--vendor", help="DICOM layout of the dynamic series [default: per-phase; with "
        "--variation wide: drawn for each study]."),
    size: Size = typer.Option(Size.small, "--size", help="small ~128x128x48 (tests), full ~448x448x160."),
    variation: str = typer.Option(
        "standard", "--variation", help="standard, or wide: one seed also draws the anatomy, both "
        "scanners' acquisitions, repositioning up to 30 mm / 15 deg, deformation, phases and "
        "confounders (every drawn parameter in truth.json); clinical: wide plus fat suppression "
        "per study, 1.5/3 T, anisotropic voxels, dose jitter, motion in both studies, lobulated "
        "nodules across the zone edge and fat-necrosis mimics (truth.json objects, scanners)."),
) -> None:
    """Write a synthetic baseline/follow-up DCE-MRI pair with its procedure record and ground truth."""
    from followup.synth import generate_pair
    from followup.synth.scenario import VARIATIONS

    if variation not in VARIATIONS:
        typer.secho(f"error: --variation must be one of {', '.join(VARIATIONS)}", err=True,
                    fg=typer.colors.RED)
        raise typer.Exit(code=2)
    if out.exists() and any(out.iterdir()):
        typer.secho(f"error: {out} is not empty; choose a new folder", err=True, fg=typer.colors.RED)
        raise typer.Exit(code=2)
    if scenario == Scenario.surveillance:
        _synth_surveillance(out, seed, vendor, size, variation)
        return
    layout = vendor.value if vendor is not None else ("per-phase" if variation == "standard" else None)
    truth = generate_pair(out, scenario.value, seed, layout, size.value, variation)
    n_files = sum(s["files"] for st in truth["studies"].values() for s in st["series"])
    layouts = truth.get("layouts")
    shown = layout if layouts is None else f"{layouts['baseline']}/{layouts['followup']}"
    extra = "" if variation == "standard" else f", variation={variation}"
    typer.echo(
        f"wrote {n_files} DICOM files to {out} (scenario={scenario.value}, seed={seed}, "
        f"vendor={shown}, size={size.value}{extra}); residual={truth['residual']}, "
        f"days since procedure={truth['days_since_procedure']}"
    )


def _synth_surveillance(out: Path, seed: int, vendor: Vendor | None, size: Size, variation: str) -> None:
    from followup.synth.surveillance import generate_surveillance

    if variation != "standard":
        typer.secho("error: --scenario surveillance takes the standard variation only", err=True,
                    fg=typer.colors.RED)
        raise typer.Exit(code=2)
    truth = generate_surveillance(out, seed, None if vendor is None else vendor.value, size.value)
    points = ", ".join(f"{tp['label']} month {tp['month']}{' RECURRENCE' if tp['recurrence'] else ''}"
                       for tp in truth["time_points"])
    typer.echo(f"wrote a surveillance series to {out} (seed={seed}, size={size.value}): baseline, {points}")


@app.command()
def inspect(
    directory: Path = typer.Argument(..., help="Folder of DICOM files (searched recursively)."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
    nifti: Path | None = typer.Option(None, "--nifti", help="Write each DCE phase as NIfTI into this folder."),
) -> None:
    """Find the DCE series of each study in a folder, order its phases and describe its geometry."""
    from followup.dicom import inspect_directory, load_dce_study, write_nifti

    _install_patient_ref_key(_settings())
    try:
        summary = inspect_directory(directory)
        written: list[str] = []
        if nifti is not None:
            study = load_dce_study(directory)
            written = [str(p) for p in write_nifti(study, nifti)]
            summary["nifti"] = written
    except FollowupError as err:
        _fail(err)
        return
    if as_json:
        typer.echo(json.dumps(summary, indent=2, default=str))
        return
    typer.echo(format_inspect_summary(summary))


@app.command()
def analyze(
    baseline: Path = typer.Option(..., "--baseline", help="Folder of the baseline (pre-procedure) MRI study."),
    followup: Path = typer.Option(..., "--followup", help="Folder of the follow-up MRI study."),
    procedure: Path = typer.Option(..., "--procedure", help="procedure.json (the procedure record)."),
    out: Path = typer.Option(..., "--out", help="Folder for report.json and report.html."),
    prior: list[Path] = typer.Option([], "--prior", help="Folder of an earlier follow-up of the same "
                                     "patient, compared with this one (repeat for each)."),
) -> None:
    """Assess residual tumour on a follow-up study: registration, enhancement, probability, reports.

    Exit status 0 whenever a report was written (deferred and failed analyses included);
    2 when no report could be made.
    """
    from followup.job import run_job
    from followup.procedure import load_procedure

    try:
        result = run_job(followup, baseline, load_procedure(procedure), out, priors=prior)
    except FollowupError as err:
        _fail(err)
        return
    r = result.report
    if r.status == "complete" and r.probability_interval is not None and r.residual_probability is not None:
        lo, hi = r.probability_interval
        conf = " (LOW CONFIDENCE)" if r.confidence == "low" else ""
        what = "residual or recurrent" if r.question == "recurrence" else "residual"
        typer.echo(f"probability of {what} disease at the ablation site {r.residual_probability:.0%} "
                   f"({r.interval_kind} 95% interval {lo:.0%}-{hi:.0%}){conf}; "
                   f"{len(r.findings.suspicious_foci) if r.findings else 0} suspicious finding(s)")
    else:
        typer.secho(f"{r.status}: {r.reason}", err=True, fg=typer.colors.YELLOW)
    if r.birads is not None:
        typer.echo(f"  BI-RADS {r.birads.category}: {r.birads.label}. {r.birads.management}")
    for c in r.contraindications:
        typer.secho(f"  CONTRAINDICATION: {c.text}", fg=typer.colors.RED)
    if r.longitudinal is not None:
        typer.echo(f"  surveillance: {len(r.longitudinal.time_points)} time points; trend "
                   f"{r.longitudinal.trend or 'none'}: {r.longitudinal.trend_reason}")
    for rec in r.recommendations:
        typer.echo(f"  recommendation [{rec.code}]: {rec.text}")
    typer.echo(f"report: {result.paths['html']} (data: {result.paths['json']}); "
               f"{result.timings_s['total']:.1f} s")


procedures_app = typer.Typer(help="The procedure registry (procedure.json records).", no_args_is_help=True)
app.add_typer(procedures_app, name="procedures")


@procedures_app.command("add")
def procedures_add(files: list[Path] = typer.Argument(..., help="procedure.json file(s).")) -> None:
    """Add (or update) procedure records; analyses waiting for them resume."""
    from followup.procedure import load_procedure
    from followup.pseudonym import patient_ref
    from followup.service.orchestrator import resume_for_procedure

    settings = _settings()
    reg = _registry(settings)
    queue = _work_queue(settings, reg)
    for f in files:
        try:
            rec = load_procedure(f)
        except FollowupError as err:
            _fail(err)
            return
        existed = any(q.procedure_date == rec.procedure_date and q.laterality == rec.laterality
                      for q in reg.procedures(rec.patient_id))
        p = reg.add_procedure(rec, recorded_by=_cli_actor())
        _audit(reg, "procedure.replace" if existed else "procedure.add", patient_ref=patient_ref(rec.patient_id),
               detail=f"procedure {p.id} ({rec.procedure_date}, {rec.laterality}) from {f.name}")
        waiting = resume_for_procedure(reg, queue, rec.patient_id)
        typer.echo(f"procedure {p.id}: {rec.procedure_date} ({rec.laterality}) added from {f.name}"
                   + (f"; resumed {len(waiting)} deferred study/studies" if waiting else ""))


@procedures_app.command("list")
def procedures_list(as_json: bool = typer.Option(False, "--json")) -> None:
    """List procedure records (patient shown by pseudonymous reference)."""
    from followup.pseudonym import patient_ref

    rows = [{"id": p.id, "patient_ref": patient_ref(p.patient_id), "procedure_date": p.procedure_date.isoformat(),
             "laterality": p.laterality, "diameter_mm": p.record["lesion"]["diameter_mm"],
             "histology": p.record["lesion"]["histology"]} for p in _registry(_settings()).procedures()]
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    for r in rows:
        typer.echo(f"{r['id']:5d}  {r['procedure_date']}  {r['laterality']}  patient {r['patient_ref']}  "
                   f"{r['diameter_mm']:g} mm {r['histology']}")


users_app = typer.Typer(help="Users of the API and their roles (docs/security/api.md).", no_args_is_help=True)
app.add_typer(users_app, name="users")


class RoleChoice(StrEnum):
    viewer = "viewer"
    reviewer = "reviewer"
    admin = "admin"


@users_app.command("add")
def users_add(name: str = typer.Argument(..., help="The user's name (shown on their reviewed marks)."),
              role: RoleChoice = typer.Option(..., "--role", help="viewer | reviewer | admin")) -> None:
    """Add a user; prints their token once (only its SHA-256 is stored)."""
    from followup.service.users import UserError, add_user

    reg = _registry(_settings())
    try:
        token = add_user(reg, name, role.value)
    except UserError as exc:
        typer.secho(f"error [users]: {exc}", err=True, fg=typer.colors.RED)
        raise typer.Exit(code=2) from exc
    _audit(reg, "user.add", detail=f"user {' '.join(name.split())} ({role.value})")
    typer.echo(token)


@users_app.command("list")
def users_list(as_json: bool = typer.Option(False, "--json")) -> None:
    """The users: name, role, added, disabled (never their tokens)."""
    from followup.service.users import users

    rows = [{"name": u.name, "role": u.role, "created_at": u.created_at.isoformat(timespec="seconds"),
             "disabled_at": u.disabled_at.isoformat(timespec="seconds") if u.disabled_at else None}
            for u in users(_registry(_settings()))]
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    for r in rows:
        typer.echo(f"{r['name']:30s} {r['role']:9s} added {r['created_at']}"
                   + (f"  DISABLED {r['disabled_at']}" if r["disabled_at"] else ""))


@users_app.command("disable")
def users_disable(name: str = typer.Argument(...)) -> None:
    """Refuse the user's token from now on."""
    from followup.service.users import disable_user

    reg = _registry(_settings())
    if not disable_user(reg, name):
        typer.secho(f"error [users]: no enabled user named {name!r}", err=True, fg=typer.colors.RED)
        raise typer.Exit(code=2)
    _audit(reg, "user.disable", detail=f"user {name}")
    typer.echo(f"user {name} disabled")


@app.command("audit")
def audit_cmd(since: str | None = typer.Option(None, "--since", help="Rows at or after YYYY-MM-DD[THH:MM] (UTC)."),
              user: str | None = typer.Option(None, "--user", help="Rows of this actor."),
              study: str | None = typer.Option(None, "--study", help="Rows of this Study Instance UID."),
              limit: int = typer.Option(10000, "--limit", min=1),
              as_json: bool = typer.Option(False, "--json", help="One JSON object per row (JSON lines)."),
              fhir: bool = typer.Option(False, "--fhir", help="A FHIR R5 Bundle of AuditEvents.")) -> None:
    """The audit trail: who read or changed what, when, from where (reading it is recorded too)."""
    from followup.service import audit

    try:
        day = dt.datetime.fromisoformat(since) if since else None
    except ValueError as exc:
        typer.secho(f"error [audit]: --since: expected YYYY-MM-DD[THH:MM], got {since!r}", err=True,
                    fg=typer.colors.RED)
        raise typer.Exit(code=2) from exc
    if day is not None and day.tzinfo is not None:
        day = day.astimezone(dt.UTC).replace(tzinfo=None)
    reg = _registry(_settings())
    rows = audit.events(reg, since=day, actor=user, study_uid=study, limit=limit)
    _audit(reg, "audit.read", detail=f"{len(rows)} rows, {'fhir' if fhir else 'json' if as_json else 'text'}")
    if fhir:
        typer.echo(json.dumps(audit.fhir_bundle(rows), indent=2))
        return
    for ev in rows:
        if as_json:
            typer.echo(json.dumps(audit.as_dict(ev)))
            continue
        typer.echo(f"{ev.at.isoformat(timespec='seconds')}Z  {ev.actor} ({ev.role or '-'}) from {ev.source or '-'}  "
                   f"{ev.action} {ev.outcome}  patient {ev.patient_ref or '-'}  study {ev.study_uid or '-'}"
                   + (f"  {ev.detail}" if ev.detail else ""))


quarantine_app = typer.Typer(help="What the listener refused: list, show, release or discard it "
                                   "(docs/security/listener.md).", no_args_is_help=True)
app.add_typer(quarantine_app, name="quarantine")


def _os_user() -> str:
    import getpass

    try:
        return getpass.getuser()
    except Exception:  # no user name in this environment
        return "unknown"


def _quarantine():
    from followup.service.quarantine import Quarantine

    return Quarantine.open(_settings())


def _quarantine_error(exc) -> None:
    typer.secho(f"error [quarantine]: {exc.message}", err=True, fg=typer.colors.RED)
    raise typer.Exit(code=3 if exc.not_found else 1)


@quarantine_app.command("list")
def quarantine_list(
    state: str = typer.Option("held", "--state", help="held, released, discarded or all."),
    study: str | None = typer.Option(None, "--study", show_default=False, help="Only this Study Instance UID."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Quarantined input, newest first (held by default)."""
    from followup.service.quarantine import entry_dict

    if state not in ("held", "released", "discarded", "all"):
        typer.secho("error [quarantine]: --state is held, released, discarded or all", err=True, fg=typer.colors.RED)
        raise typer.Exit(code=2)
    rows = [entry_dict(e) for e in _quarantine().list(state=None if state == "all" else state, study_uid=study)]
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    for r in rows:
        typer.echo(f"#{r['id']:<5d} {r['state']:9s} {r['kind']:9s} {r['status'] or '-':6s} "
                   f"study {r['study_uid'] or '-'}  {r['reason']}")
    if not rows:
        typer.echo(f"nothing {state} in the quarantine" if state != "all" else "the quarantine is empty")


@quarantine_app.command("show")
def quarantine_show(entry: int = typer.Argument(..., help="The entry's number (from list).")) -> None:
    """One entry, with its study's state and review flag, as JSON."""
    from followup.service.quarantine import QuarantineError

    try:
        typer.echo(json.dumps(_quarantine().show(entry), indent=2))
    except QuarantineError as exc:
        _quarantine_error(exc)


def _quarantine_action(action: str, target: str, by: str | None, why: str | None) -> None:
    from followup.service.quarantine import QuarantineError

    q = _quarantine()
    try:
        out = getattr(q, action)(target, by=by or _os_user(), why=why)
    except QuarantineError as exc:
        _audit(q.registry, f"quarantine.{action}", outcome="failed", detail=f"{target[:80]}: {exc.message}"[:500])
        _quarantine_error(exc)
        return
    _audit(q.registry, f"quarantine.{action}", study_uid=q.study_of(target),
           detail=f"{target[:80]} by {by or _os_user()}: done {sorted(out.done)}, kept {sorted(out.kept)}")
    for entry_id, what in out.done.items():
        typer.echo(f"#{entry_id}: {what}")
    for entry_id, reason in out.kept.items():
        typer.echo(f"#{entry_id}: kept: {reason}")
    if out.study_state:
        typer.echo(f"study state: {out.study_state}")


@quarantine_app.command("release")
def quarantine_release(
    target: str = typer.Argument(..., help="An entry's number, or a Study Instance UID (all its entries; "
                                           "a study quarantined whole goes back to receiving)."),
    by: str | None = typer.Option(None, "--by", show_default=False, help="Who releases it (default: the OS user)."),
    why: str | None = typer.Option(None, "--why", show_default=False, help="Why (kept with the entry)."),
) -> None:
    """Offer quarantined instances to the store again (every check applies; refused ones stay held)."""
    _quarantine_action("release", target, by, why)


@quarantine_app.command("discard")
def quarantine_discard(
    target: str = typer.Argument(..., help="An entry's number, or a Study Instance UID (all its entries; "
                                           "of a study quarantined whole, its stored instances too)."),
    by: str | None = typer.Option(None, "--by", show_default=False, help="Who discards it (default: the OS user)."),
    why: str | None = typer.Option(None, "--why", show_default=False, help="Why (kept with the entry)."),
) -> None:
    """Delete quarantined data; the entry stays as the record (who, when, why)."""
    _quarantine_action("discard", target, by, why)


@app.command("serve-dicom")
def serve_dicom_cmd(
    ae_title: str | None = typer.Option(None, "--ae-title", show_default=False,
                                        help="Our AE title (env FOLLOWUP_AE_TITLE; default FOLLOWUP)."),
    port: int = typer.Option(11112, "--port"),
    allow: list[str] = typer.Option(..., "--allow", help="Calling AE title allowed to send (repeat)."),
    destination: str | None = typer.Option(None, "--destination", show_default=False,
                                           help="PACS receiving SR/SEG/PDF: AET@HOST:PORT, or AET@HOST:PORT/tls "
                                                "(C-STORE), or a DICOMweb base URL https://HOST/dicom-web "
                                                "(STOW-RS; credentials: FOLLOWUP_DICOMWEB_*) "
                                                "(env FOLLOWUP_DESTINATION)."),
    quiet_seconds: float = typer.Option(30.0, "--quiet-seconds", help="Stable-study quiet period."),
    host: str | None = typer.Option(None, "--host", show_default=False,
                                    help="Interface to listen on (env FOLLOWUP_DICOM_HOST; default 0.0.0.0)."),
    tls_cert: Path | None = typer.Option(None, "--tls-cert", show_default=False,
                                         help="Our certificate (PEM): the listener speaks DICOM TLS "
                                              "(env FOLLOWUP_TLS_CERT)."),
    tls_key: Path | None = typer.Option(None, "--tls-key", show_default=False,
                                        help="The certificate's private key (PEM) (env FOLLOWUP_TLS_KEY)."),
    tls_ca: Path | None = typer.Option(None, "--tls-ca", show_default=False,
                                       help="CA bundle (PEM): callers need a certificate it signed "
                                            "(mutual TLS); also verifies the PACS when sending (env FOLLOWUP_TLS_CA)."),
    tls_destination: bool = typer.Option(False, "--tls-destination",
                                         help="Send results to the destination over TLS "
                                              "(env FOLLOWUP_TLS_DESTINATION=1)."),
    max_instance_bytes: int | None = typer.Option(
        None, "--max-instance-bytes", min=1, show_default=False,
        help="Largest instance accepted (default 512 MiB); larger ones are refused (0xA701) "
             "(env FOLLOWUP_MAX_INSTANCE_BYTES)."),
    max_study_instances: int | None = typer.Option(
        None, "--max-study-instances", min=1, show_default=False,
        help="Most instances kept for one study (default 10000); more are refused (0xA702) "
             "(env FOLLOWUP_MAX_STUDY_INSTANCES)."),
    max_associations: int | None = typer.Option(
        None, "--max-associations", min=1, show_default=False,
        help="Most concurrent associations (default 8); more are rejected (env FOLLOWUP_MAX_ASSOCIATIONS)."),
    metrics_port: int | None = typer.Option(
        None, "--metrics-port", min=1, show_default=False,
        help="Serve Prometheus metrics and /healthz on this port (env FOLLOWUP_METRICS_PORT; interface: "
             "FOLLOWUP_METRICS_HOST, default 127.0.0.1)."),
) -> None:
    """The DICOM node PACS auto-routes to: C-ECHO, C-STORE; stable studies go to the workers."""
    from followup.service.listener import listener_ssl_context, serve_dicom
    from followup.service.reconcile import start_periodic_sweep

    try:
        settings = _listener_settings(destination, tls_destination, ae_title=ae_title, tls_cert=tls_cert,
                                      tls_key=tls_key, tls_ca=tls_ca, max_instance_bytes=max_instance_bytes,
                                      max_study_instances=max_study_instances, max_associations=max_associations,
                                      dicom_host=host, metrics_port=metrics_port)
        listener_ssl_context(settings)  # unreadable certificate or key: say so now, in one line
    except (ValueError, OSError) as exc:
        typer.secho(f"error [config]: {exc}", err=True, fg=typer.colors.RED)
        raise typer.Exit(code=2) from exc
    _warn_insecure(settings, "dicom")
    reg = _registry(settings)
    dest = settings.destination
    if dest is not None:
        reg.put_setting("destination", str(dest))  # workers started without one send there
    queue = _work_queue(settings, reg)
    mode = ("TLS, client certificates required" if settings.tls_ca else "TLS") if settings.listener_tls \
        else "no TLS"
    host = settings.dicom_host
    typer.echo(f"listening as {settings.ae_title} on {host}:{port} ({mode}); allowed callers: {', '.join(allow)}; "
               f"results to {dest or 'nowhere (no --destination)'}; at most {settings.max_associations} "
               f"associations, {settings.max_instance_bytes} bytes an instance, "
               f"{settings.max_study_instances} instances a study")
    start_periodic_sweep(settings, reg, queue)  # re-sends what a broker restart lost
    _serve_listener_metrics(settings, reg)
    from followup.service import metrics

    def hand_over(study_uid: str) -> None:
        queue.enqueue_study(study_uid)
        metrics.HANDOVERS.inc()

    serve_dicom(settings, ae_title=settings.ae_title, port=port, allow=list(allow), quiet_seconds=quiet_seconds,
                on_stable=hand_over, host=host)


def _serve_listener_metrics(settings, registry) -> None:
    """The listener's events and the service's state (``followup.service.metrics.ServiceState``) on
    ``settings.metrics_port``, when set."""
    if not settings.metrics_port:
        return
    from prometheus_client import REGISTRY

    from followup.service import metrics

    metrics.initialise_listener()
    REGISTRY.register(metrics.ServiceState(registry, settings.data_dir, settings.redis_url))
    metrics.serve(settings.metrics_port, settings.metrics_host, REGISTRY)


def _listener_settings(destination: str | None, tls_destination: bool, **overrides):
    """serve-dicom's Settings: ``--destination`` (else FOLLOWUP_DESTINATION), made TLS by
    ``--tls-destination`` (or FOLLOWUP_TLS_DESTINATION=1, applied by Settings.from_env); a DICOMweb
    URL says https itself."""
    from dataclasses import replace

    from followup.config import parse_remote, with_tls

    settings = _settings(destination=parse_remote(destination) if destination else None, **overrides)
    if tls_destination and settings.destination is not None and not settings.destination.tls:
        settings = replace(settings, destination=with_tls(settings.destination, "--tls-destination"))
    return settings


@app.command("worker")
def worker_cmd(
    queues: str = typer.Option("realtime,batch", "--queues"),
    concurrency: int = typer.Option(1, "--concurrency"),
    hostname: str | None = typer.Option(None, "--hostname"),
    metrics_port: int | None = typer.Option(
        None, "--metrics-port", min=1, show_default=False,
        help="Serve the worker's Prometheus metrics (all its processes) and /healthz on this port "
             "(env FOLLOWUP_METRICS_PORT; interface: FOLLOWUP_METRICS_HOST, default 127.0.0.1)."),
    heartbeat_file: Path | None = typer.Option(
        None, "--heartbeat-file", show_default=False,
        help="Touch this file at each heartbeat (every 15 s): a liveness probe reads its age."),
) -> None:
    """A Celery worker on these queues, configured with this command's settings (options and
    FOLLOWUP_* environment)."""
    from workers.celery_app import configure

    argv = ["worker", "-Q", queues, "--concurrency", str(concurrency), "--prefetch-multiplier", "1", "-l", "INFO"]
    if hostname:
        argv += ["--hostname", hostname]
    settings = _settings(metrics_port=metrics_port)
    if settings.metrics_port:
        _serve_worker_metrics(settings, queues.split(","))
    if heartbeat_file is not None:
        from workers import heartbeat

        heartbeat.heartbeat_file = heartbeat_file
    _warn_insecure(settings, "worker")
    _install_patient_ref_key(settings)
    configure(settings).worker_main(argv)


def _serve_worker_metrics(settings, queues: list[str]) -> None:
    """Every process of this worker writes its metrics to one folder (``PROMETHEUS_MULTIPROC_DIR``,
    else a new temporary one: never shared by two workers), served by this, the main process."""
    import os
    import tempfile

    from followup.service import metrics
    from workers import heartbeat

    folder = os.environ.get(metrics.MULTIPROC_ENV) or tempfile.mkdtemp(prefix="followup-metrics-")
    metrics.use_multiprocess_dir(Path(folder))
    metrics.initialise_worker(queues)
    metrics.serve(settings.metrics_port, settings.metrics_host, metrics.multiprocess_registry(), heartbeat.alive)


@app.command("serve-api")
def serve_api_cmd(port: int = typer.Option(8080, "--port"),
                  host: str | None = typer.Option(None, "--host", show_default=False,
                                                  help="Interface to listen on (env FOLLOWUP_API_HOST; "
                                                       "default 127.0.0.1)."),
                  tls_cert: Path | None = typer.Option(None, "--tls-cert", show_default=False,
                                                       help="Certificate (PEM, chain first): HTTPS "
                                                            "(env FOLLOWUP_API_TLS_CERT)."),
                  tls_key: Path | None = typer.Option(None, "--tls-key", show_default=False,
                                                      help="Its private key (PEM) (env FOLLOWUP_API_TLS_KEY).")
                  ) -> None:
    """The HTTP API and web page (FOLLOWUP_API_TOKEN, users of `followup users`, or OIDC;
    docs/security/api.md), over HTTPS with a certificate."""
    from followup.api.app import serve_api

    try:
        settings = _settings(api_host=host, api_tls_cert=tls_cert, api_tls_key=tls_key)
    except ValueError as exc:
        typer.secho(f"error [config]: {exc}", err=True, fg=typer.colors.RED)
        raise typer.Exit(code=2) from exc
    for path in (settings.api_tls_cert, settings.api_tls_key):
        if path is not None and not Path(path).is_file():
            typer.secho(f"error [config]: API TLS file {str(path)!r} is not a readable file", err=True,
                        fg=typer.colors.RED)
            raise typer.Exit(code=2)
    _warn_insecure(settings, "api")
    reg = _registry(settings)
    try:
        serve_api(settings, port=port, host=settings.api_host, registry=reg, queue=_work_queue(settings, reg))
    except FollowupError as err:  # no way to sign in, a weak token, unreadable OIDC keys
        _fail(err)


@app.command("check-config")
def check_config_cmd() -> None:
    """Every insecure setting of this deployment (environment and files), one line each; exit
    status 1 when there is any. serve-api, serve-dicom and worker log theirs at start."""
    from followup.config_check import insecure_settings

    try:
        settings = _settings()
    except ValueError as exc:
        typer.secho(f"error [config]: {exc}", err=True, fg=typer.colors.RED)
        raise typer.Exit(code=2) from exc
    findings = insecure_settings(settings)
    for finding in findings:
        typer.echo(f"WARNING {finding}")
    if findings:
        typer.echo(f"{len(findings)} insecure setting(s); see docs/security/deployment.md")
        raise typer.Exit(code=1)
    typer.echo("no insecure setting found")


@app.command("reanalyze")
def reanalyze_cmd(
    since: str | None = typer.Option(None, "--since", help="Studies dated on or after YYYY-MM-DD."),
    study: list[str] = typer.Option([], "--study", help="Study Instance UID (repeat)."),
    all_studies: bool = typer.Option(False, "--all", help="Every analysed follow-up study."),
    reason: str = typer.Option("", "--reason"),
    resume: int | None = typer.Option(None, "--resume", help="Resume batch N (re-send its queued analyses)."),
    wait: bool = typer.Option(True, "--wait/--no-wait", help="Show progress until the batch is done."),
) -> None:
    """Re-run stored studies on the batch queue (new report versions; real-time work keeps priority)."""
    from followup.service.batch import resume_batch, start_reanalysis

    settings = _settings()
    reg = _registry(settings)
    queue = _work_queue(settings, reg)
    if resume is not None:
        if reg.batch(resume) is None:
            typer.secho(f"error [batch]: no batch {resume}", err=True, fg=typer.colors.RED)
            raise typer.Exit(code=2)
        n = resume_batch(reg, queue, resume)
        _audit(reg, "batch.resume", detail=f"batch {resume}: {n} analyses sent again")
        typer.echo(f"batch {resume}: {n} queued analyses sent again")
        batch_id = resume
    else:
        try:
            day = dt.date.fromisoformat(since) if since else None
            batch = start_reanalysis(reg, queue, since=day, study_uids=list(study) or None,
                                     all_studies=all_studies, reason=reason, created_by=_cli_actor())
        except ValueError as exc:
            typer.secho(f"error [batch]: {exc}", err=True, fg=typer.colors.RED)
            raise typer.Exit(code=2) from exc
        batch_id = batch.id
        _audit(reg, "batch.start", detail=f"batch {batch_id}: {batch.total} studies")
        _audit_batch_studies(reg, batch_id)
        typer.echo(f"batch {batch_id}: {batch.total} studies enqueued on 'batch' "
                   f"(resume with: followup reanalyze --resume {batch_id})")
    if not wait:
        return
    with typer.progressbar(length=max(reg.batch_progress(batch_id)["total"], 1), label=f"batch {batch_id}") as bar:
        done = 0
        while True:
            prog = reg.batch_progress(batch_id)
            bar.update(prog["done"] - done)
            done = prog["done"]
            if prog["remaining"] == 0:
                break
            time.sleep(1.0)
    typer.echo(json.dumps(reg.batch_progress(batch_id)["by_status"]))


@app.command("import")
def import_cmd(
    folder: Path = typer.Argument(..., exists=True, file_okay=False, dir_okay=True,
                                  help="Folder of DICOM files (earlier studies exported from PACS or a disk)."),
    recursive: bool = typer.Option(False, "--recursive", "-r", help="Also the files in its sub-folders."),
    analyse: bool = typer.Option(True, "--analyse/--no-analyse",
                                 help="Queue the studies that received new images for analysis on the batch queue."),
) -> None:
    """Bring existing DICOM files into the store and registry through the listener's own validation."""
    from followup.service.importer import files_in, import_files, queue_imported
    from followup.service.patients import index_patients
    from followup.service.store import Store

    settings = _settings()
    reg = _registry(settings)
    paths = files_in(folder, recursive)
    if not paths:
        hint = "" if recursive else " (sub-folders: --recursive)"
        typer.secho(f"error [import]: no file to import in {folder}{hint}", err=True, fg=typer.colors.RED)
        raise typer.Exit(code=2)
    store = Store(settings.data_dir, sync=settings.sync_storage)
    with typer.progressbar(length=len(paths), label="importing", file=sys.stderr) as bar:
        res = import_files(paths, store, reg, on_file=lambda _path, _outcome: bar.update(1))
    index_patients(reg)
    typer.echo(f"{len(paths)} files: {res.stored} stored, {res.duplicates} duplicate (already stored), "
               f"{res.refused} refused, {len(res.failed)} failed; {len(res.studies)} study/studies")
    for reason, n in sorted(res.reasons().items(), key=lambda kv: (-kv[1], kv[0])):
        typer.echo(f"  {n} x {reason}")
    if res.refused:
        typer.echo(f"refused files are kept with their reason in {store.quarantine_dir}")
    if analyse and res.new_images:
        batch, failed = queue_imported(reg, _work_queue(settings, reg), res.new_images,
                                       reason=f"import of {len(res.new_images)} study/studies")
        if batch is not None:
            _audit(reg, "batch.start", detail=f"batch {batch.id}: import of {batch.total} studies")
            _audit_batch_studies(reg, batch.id, list((batch.selector or {}).get("study_uids") or ()))
            typer.echo(f"batch {batch.id}: {batch.total - len(failed)} study/studies queued for analysis on 'batch' "
                       f"(progress: the page's reanalysis review; after a broker restart: "
                       f"followup reanalyze --resume {batch.id})")
        if failed:
            typer.secho(f"error [broker]: {len(failed)} study/studies could not be queued now; the listener's "
                        "reconciliation sweep (or followup reconcile) sends them", err=True, fg=typer.colors.RED)
    elif not analyse:
        typer.echo("not queued for analysis (--no-analyse)")
    if res.failed:
        raise typer.Exit(code=1)


@app.command("reconcile")
def reconcile_cmd(older_than: float = typer.Option(600.0, "--older-than",
                                                   help="Seconds an analysis may stay queued/running.")) -> None:
    """Re-send work lost by the broker (after a Redis restart): the registry is the source of truth."""
    from followup.service.reconcile import sweep

    settings = _settings()
    reg = _registry(settings)
    res = sweep(reg, _work_queue(settings, reg), older_than_s=older_than,  # analyses still in Redis are left alone
                lease_s=settings.analysis_lease_s)  # ... but for a dead worker's
    typer.echo(f"{len(res.studies_enqueued)} stable study/studies enqueued, "
               f"{len(res.analyses_resent)} analysis/analyses re-sent "
               f"({len(res.analyses_taken_over)} of dead workers), "
               f"deliveries of {len(res.deliveries_resent)} analysis/analyses re-sent")
    if res.broker_unreadable or res.errors:
        typer.secho("error [broker]: Redis could not be read or written; nothing lost, run again once it is up",
                    err=True, fg=typer.colors.RED)
        raise typer.Exit(code=2)


@app.command("status")
def status_cmd(study_uid: str | None = typer.Argument(None),
               as_json: bool = typer.Option(False, "--json")) -> None:
    """Studies and their analyses (one study in detail when a UID is given)."""
    reg = _registry(_settings())
    if study_uid is None:
        rows = []
        for s in reg.studies():
            a = reg.latest_analysis(s.study_uid)
            rows.append({"study_uid": s.study_uid, "study_date": str(s.study_date), "state": s.state,
                         "role": s.role, "instances": s.n_instances,
                         "probability": a.probability if a else None,
                         "analysis": f"{a.algorithm_version}-r{a.revision} {a.status}" if a else None,
                         "review": s.review_reason})
        if as_json:
            typer.echo(json.dumps(rows, indent=2))
        else:
            for r in rows:
                p = "" if r["probability"] is None else f" p={r['probability']:.2f}"
                flag = "  REVIEW: see followup quarantine list" if r["review"] else ""
                typer.echo(f"{r['study_uid']}  {r['study_date']}  {r['state']:10s} {r['role']:9s} "
                           f"{r['instances']:5d} instances  {r['analysis'] or '-'}{p}{flag}")
        return
    s = reg.study(study_uid)
    if s is None:
        typer.secho(f"error [not-found]: no study {study_uid}", err=True, fg=typer.colors.RED)
        raise typer.Exit(code=2)
    detail = {"study_uid": s.study_uid, "state": s.state, "role": s.role, "reason": s.reason,
              "instances": s.n_instances, "review": s.review_reason,
              "quarantined": len(reg.quarantined(study_uid=study_uid)),
              "analyses": [{"id": a.id, "version": a.algorithm_version, "revision": a.revision,
                            "status": a.status, "reason": a.reason, "probability": a.probability,
                            "interval": [a.interval_low, a.interval_high], "queue": a.queue,
                            "duration_s": a.duration_s, "report_dir": a.report_dir,
                            "deliveries": [{"kind": d.kind, "status": d.status, "attempts": d.attempts,
                                            "last_error": d.last_error} for d in reg.deliveries(analysis_id=a.id)]}
                           for a in reg.analyses(study_uid=study_uid)]}
    typer.echo(json.dumps(detail, indent=2, default=str))


@app.command("patient-ref-key")
def patient_ref_key_cmd(accept_new: bool = typer.Option(
        False, "--accept-new", help="Record this key as the registry's, after it was replaced on purpose "
                                    "(every patient_ref changes).")) -> None:
    """Where the patient-ref key is and its fingerprint (back the key file up with the registry)."""
    from followup.pseudonym import FINGERPRINT_SETTING, check_registry, fingerprint, load_key
    from followup.service.registry import Registry

    settings = _settings()
    try:
        key = load_key(settings.patient_ref_key, settings.patient_ref_key_path)
        registry = Registry(settings.database_url)
        recorded = registry.get_setting(FINGERPRINT_SETTING)
        check_registry(key, registry, accept_new=accept_new)
    except FollowupError as err:
        _fail(err)
        return
    source = "FOLLOWUP_PATIENT_REF_KEY" if settings.patient_ref_key else str(settings.patient_ref_key_path)
    typer.echo(f"key: {source}\nfingerprint: {fingerprint(key)}"
               + (f" (was {recorded})" if recorded and recorded != fingerprint(key) else ""))


def format_inspect_summary(summary: dict) -> str:
    """Readable text of ``inspect_directory``'s summary (no patient identifiers)."""
    lines = [f"{summary['path']}: {summary['n_files']} files, {summary['n_instances']} DICOM instances"]
    for rej in summary.get("rejected_files", []):
        lines.append(f"  rejected {rej['path']}: {rej['reason']}")
    for patient in summary["patients"]:
        lines.append(f"patient {patient['patient_ref']}")
        for st in patient["studies"]:
            lines.append(f"  study {st['study_uid']} ({st['study_date'] or 'no date'}), "
                         f"{len(st['series'])} series")
            dce = st["dce"]
            if dce is None:
                err = st["error"] or {"code": "no-dce", "message": "no DCE series"}
                lines.append(f"    no usable DCE series [{err['code']}]: {err['message']}")
            else:
                times = ", ".join("?" if t is None else f"{t:.0f}" for t in dce["times_s"])
                lines.append(f"    DCE: {dce['series_description']!r}, {dce['n_phases']} phases "
                             f"ordered by {dce['ordering']} (pre-contrast first), t = [{times}] s")
                spacing = " x ".join(f"{s:.3g}" for s in dce["spacing_mm"])
                matrix = " x ".join(str(m) for m in dce["matrix"])
                lines.append(f"    geometry: {dce['orientation']}, {matrix} voxels of {spacing} mm, "
                             f"origin (LPS) {[round(v, 1) for v in [r[3] for r in dce['affine_lps'][:3]]]}"
                             + (f", laterality {dce['laterality']}" if dce.get("laterality") else ""))
                for ph in dce["phases"]:
                    lines.append(f"      phase {ph['index']}: mean {ph['mean']:.1f}, max {ph['max']:.0f}"
                                 + ("" if ph["contrast"] is None else
                                    f", contrast {'yes' if ph['contrast'] else 'no'}"))
            for ign in st["ignored_series"]:
                lines.append(f"    ignored series {ign['series_number']} {ign['description']!r}: "
                             f"{ign['reason']}")
            for w in st["warnings"]:
                lines.append(f"    warning: {w}")
    if summary.get("nifti"):
        lines.append("NIfTI written: " + ", ".join(summary["nifti"]))
    return "\n".join(lines)


if __name__ == "__main__":  # pragma: no cover
    app()
