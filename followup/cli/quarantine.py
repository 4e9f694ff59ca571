"""``followup quarantine``: what the listener refused (list, show, release, discard)."""

from __future__ import annotations

import json

import typer

from followup.cli.common import command_settings, record_audit

quarantine_app = typer.Typer(help="What the listener refused: list, show, release or discard it "
                                   "(docs/security/listener.md).", no_args_is_help=True)


def _os_user() -> str:
    import getpass

    try:
        return getpass.getuser()
    except Exception:  # no user name in this environment
        return "unknown"


def _quarantine():
    from followup.service.quarantine import Quarantine

    return Quarantine.open(command_settings())


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
        record_audit(q.registry, f"quarantine.{action}", outcome="failed", detail=f"{target[:80]}: {exc.message}"[:500])
        _quarantine_error(exc)
        return
    record_audit(q.registry, f"quarantine.{action}", study_uid=q.study_of(target),
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
