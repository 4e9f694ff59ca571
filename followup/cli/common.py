"""What every command of the ``followup`` command line shares: its Settings (the main options,
then the environment), the registry, the work queue, the audit trail and the error exit."""

from __future__ import annotations

import importlib
import logging

import typer

from followup.errors import FollowupError


def fail(err: FollowupError) -> None:
    typer.secho(f"error [{err.code}]: {err.message}", err=True, fg=typer.colors.RED)
    raise typer.Exit(code=2)


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


def command_settings(**overrides):
    """The Settings of this command: its options, then the main options, then the environment."""
    from followup.config import Settings

    ctx = _current_context()
    options = dict((ctx.find_root().obj or {}) if ctx is not None else {})
    options.update(overrides)
    s = Settings.from_env(**options)
    s.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)  # images and reports: the owner's alone
    return s


def warn_insecure(settings, role: str) -> None:
    """``check-config``'s findings that concern this server, one WARNING each, at its start."""
    from followup.config_check import insecure_settings

    log = logging.getLogger("followup.config_check")
    for finding in insecure_settings(settings, role):
        log.warning("insecure setting: %s", finding)


def open_registry(settings):
    """The registry, with this process's patient-ref key checked against it and installed."""
    from followup.pseudonym import install_from_settings
    from followup.service.registry import Registry

    registry = Registry(settings.database_url)
    try:
        install_from_settings(settings, registry)
    except FollowupError as err:
        fail(err)
    return registry


def install_patient_ref_key(settings) -> None:
    """The patient-ref key of a command that opens no registry (inspect, worker)."""
    from followup.pseudonym import install_from_settings

    try:
        install_from_settings(settings)
    except FollowupError as err:
        fail(err)


def cli_actor() -> str:
    """Who runs this command, for the audit trail and the records it changes: ``cli:<login>``."""
    import getpass

    try:
        return f"cli:{getpass.getuser()}"
    except Exception:
        return "cli:unknown"


def record_audit(registry, action: str, **kw) -> None:
    """A row of the audit trail for this command (``followup.service.audit``)."""
    from followup.service import audit

    audit.record(registry, cli_actor(), action, role="admin", source="cli", **kw)


def audit_batch_studies(registry, batch_id: int, study_uids: list[str] | None = None) -> None:
    """One ``batch.start`` row per study of the batch (its analyses', or ``study_uids``)."""
    from followup.pseudonym import patient_ref
    from followup.service import audit

    uids = study_uids if study_uids is not None else [a.study_uid for a in registry.analyses(batch_id=batch_id)]
    subjects = []
    for uid in uids:
        st = registry.study(uid)
        subjects.append((patient_ref(st.patient_id) if st else None, uid))
    audit.record_many(registry, cli_actor(), "batch.start", subjects, role="admin", source="cli",
                      detail=f"batch {batch_id}")


def work_queue(settings, registry):
    """The composition root's one tie to ``workers``: the Celery queue, configured with ``settings``."""
    from workers.tasks import celery_queue

    return celery_queue(settings, registry)
