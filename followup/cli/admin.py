"""Administration commands: ``users``, ``audit`` and ``check-config``."""

from __future__ import annotations

import datetime as dt
import json
from enum import StrEnum

import typer

from followup.cli.common import command_settings, open_registry, record_audit

users_app = typer.Typer(help="Users of the API and their roles (docs/security/api.md).", no_args_is_help=True)


class RoleChoice(StrEnum):
    viewer = "viewer"
    reviewer = "reviewer"
    admin = "admin"


@users_app.command("add")
def users_add(name: str = typer.Argument(..., help="The user's name (shown on their reviewed marks)."),
              role: RoleChoice = typer.Option(..., "--role", help="viewer | reviewer | admin")) -> None:
    """Add a user; prints their token once (only its SHA-256 is stored)."""
    from followup.service.users import UserError, add_user

    reg = open_registry(command_settings())
    try:
        token = add_user(reg, name, role.value)
    except UserError as exc:
        typer.secho(f"error [users]: {exc}", err=True, fg=typer.colors.RED)
        raise typer.Exit(code=2) from exc
    record_audit(reg, "user.add", detail=f"user {' '.join(name.split())} ({role.value})")
    typer.echo(token)


@users_app.command("list")
def users_list(as_json: bool = typer.Option(False, "--json")) -> None:
    """The users: name, role, added, disabled (never their tokens)."""
    from followup.service.users import users

    rows = [{"name": u.name, "role": u.role, "created_at": u.created_at.isoformat(timespec="seconds"),
             "disabled_at": u.disabled_at.isoformat(timespec="seconds") if u.disabled_at else None}
            for u in users(open_registry(command_settings()))]
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

    reg = open_registry(command_settings())
    if not disable_user(reg, name):
        typer.secho(f"error [users]: no enabled user named {name!r}", err=True, fg=typer.colors.RED)
        raise typer.Exit(code=2)
    record_audit(reg, "user.disable", detail=f"user {name}")
    typer.echo(f"user {name} disabled")


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
    reg = open_registry(command_settings())
    rows = audit.events(reg, since=day, actor=user, study_uid=study, limit=limit)
    record_audit(reg, "audit.read", detail=f"{len(rows)} rows, {'fhir' if fhir else 'json' if as_json else 'text'}")
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


def check_config_cmd() -> None:
    """Every insecure setting of this deployment (environment and files), one line each; exit
    status 1 when there is any. serve-api, serve-dicom and worker log theirs at start."""
    from followup.config_check import insecure_settings

    try:
        settings = command_settings()
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
