"""The registry's engine and sessions, its schema upkeep (new columns, the append-only audit
trail), the settings processes publish, and the one conditional UPDATE behind every named
transition; each group of records (``studies``, ``analyses``, ...) extends ``RegistryCore``."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, cast

from sqlalchemy import create_engine, event, inspect as sa_inspect, select, update
from sqlalchemy.engine import CursorResult, Engine, Result
from sqlalchemy.orm import Session, sessionmaker

from followup.service.registry.tables import Base, ServiceSetting
from followup.states import IllegalTransition, Transitions


def rowcount(result: Result[Any]) -> int:
    """Rows matched by an UPDATE run through ``Session.execute`` (typed as a plain ``Result``; at
    run time a DML statement always gives a ``CursorResult``)."""
    return cast(CursorResult, result).rowcount


def make_engine(url: str, *, sync: bool = True) -> Engine:
    """``sync``: SQLite commits reach the disk (synchronous=FULL) before they return; without it
    (NORMAL, in WAL mode) a commit survives a process crash but maybe not a power cut."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(conn, _record):  # WAL: readers never block the writer
            cur = conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute(f"PRAGMA synchronous={'FULL' if sync else 'NORMAL'}")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()
        return engine
    return create_engine(url, pool_pre_ping=True)


class RegistryCore:
    """The engine, its sessions and schema, and what every group of records shares: the published
    settings and ``transition``."""

    def __init__(self, url: str, *, sync: bool = True) -> None:
        self.engine = make_engine(url, sync=sync)
        Base.metadata.create_all(self.engine)
        self._add_new_columns()
        self._protect_audit()
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self._sessions() as s:
            try:
                yield s
                s.commit()
            except BaseException:
                s.rollback()
                raise

    # --- settings ------------------------------------------------------------------------------
    def put_setting(self, key: str, value: str) -> None:
        with self.session() as s:
            row = s.get(ServiceSetting, key)
            if row is None:
                s.add(ServiceSetting(key=key, value=value))
            else:
                row.value = value

    def get_setting(self, key: str) -> str | None:
        with self.session() as s:
            row = s.get(ServiceSetting, key)
            return None if row is None else row.value

    # --- named transitions -------------------------------------------------------------------------
    def transition(self, table: Transitions, column, key_column, key: object, target: str,
                   values: dict, only_from: frozenset[str] | None = None) -> None:
        """One conditional UPDATE to ``target`` from the states ``table`` allows (and, given
        ``only_from``, only from those of them); IllegalTransition (naming the state found) when the
        row was in another, LookupError when there is no row."""
        with self.session() as s:
            allowed = table.sources(target) if only_from is None else table.sources(target) & only_from
            sources = sorted(str(state) for state in allowed)  # plain strings for any driver
            done = s.execute(update(column.class_).where(key_column == key, column.in_(sources))
                             .values({column.key: str(target), **values}))
            if rowcount(done) == 1:
                return
            current = s.scalar(select(column).where(key_column == key))
        if current is None:
            raise LookupError(f"no {table.what} {key}")
        table.check(key, current, target)  # raises: the row was in a state target is not reached from
        if only_from is not None and current not in only_from:
            raise IllegalTransition(table.what, key, current, target, f"only from {', '.join(sorted(only_from))}")
        raise IllegalTransition(table.what, key, current, target, "changed meanwhile")  # pragma: no cover

    # Columns added after a registry may have been created: (table, column, SQL type).
    NEW_COLUMNS = (("analyses", "heartbeat_at", "TIMESTAMP"), ("studies", "patient_name", "VARCHAR(324)"),
                   ("studies", "patient_birth_date", "VARCHAR(16)"), ("procedures", "recorded_by", "VARCHAR(100)"),
                   ("batches", "created_by", "VARCHAR(100)"),
                   ("studies", "review_reason", "TEXT"))

    def _protect_audit(self) -> None:
        """The audit trail is append-only: the database itself refuses to change or delete a row
        (SQLite: triggers; PostgreSQL: rules that drop the statement)."""
        if self.engine.dialect.name == "sqlite":
            statements = [f"CREATE TRIGGER IF NOT EXISTS audit_events_no_{op.lower()} BEFORE {op} ON audit_events "
                          f"BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END"
                          for op in ("UPDATE", "DELETE")]
        elif self.engine.dialect.name == "postgresql":
            statements = [f"CREATE OR REPLACE RULE audit_events_no_{op.lower()} AS ON {op} TO audit_events "
                          f"DO INSTEAD NOTHING" for op in ("UPDATE", "DELETE")]
        else:
            return
        with self.engine.begin() as conn:
            for sql in statements:
                conn.exec_driver_sql(sql)

    def _add_new_columns(self) -> None:
        """``create_all`` makes missing tables, not missing columns: add those to an older
        registry (SQLite and PostgreSQL both take ``ALTER TABLE .. ADD COLUMN``)."""
        inspector = sa_inspect(self.engine)
        for table, column, sql_type in self.NEW_COLUMNS:
            if column not in {c["name"] for c in inspector.get_columns(table)}:
                with self.engine.begin() as conn:
                    conn.exec_driver_sql(f"ALTER TABLE {table} ADD COLUMN {column} {sql_type}")
