"""Dead letters in SQL: messages a flow could not handle, kept for inspection and replay."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from active_data_flow.runtimes.heartbeat.store._rows import dead_letter_record
from active_data_flow.runtimes.heartbeat.store._shared import SqlRepository
from active_data_flow.runtimes.heartbeat.store.base import MAX_ERROR, check_page, truncate
from active_data_flow.runtimes.heartbeat.store.codec import encode, encode_column
from active_data_flow.runtimes.heartbeat.store.models import dead_letters
from active_data_flow.runtimes.heartbeat.store.records import DeadLetter, Page

__all__ = ["SqlDeadLetters", "letter_values"]


def letter_values(letter: Mapping[str, Any], run_id: int | None,
                  now: datetime) -> dict[str, Any]:
    """The stored fields of a dead letter (as :func:`active_data_flow.runner.dead_letter`
    makes them): bounded texts, a mapping message, a known failure time; the message, its
    metadata and position in tagged JSON (:mod:`.codec`), so that replay gets them back as
    they were."""
    message = letter.get("message")
    return {
        "flow": str(letter.get("flow") or "?")[:200],
        "run_id": run_id,
        "position": encode_column(letter.get("position")),
        "error_type": str(letter["error_type"])[-200:] if letter.get("error_type") else None,
        "error": truncate(str(letter.get("error") or ""), MAX_ERROR),
        "message": encode(message if isinstance(message, Mapping) else {"value": message}),
        "meta": encode(letter.get("metadata")) or None,
        "failed_at": _parse_time(letter.get("failed_at")) or now,
        "replay_attempts": 0,
    }


def _parse_time(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
    return None


class SqlDeadLetters(SqlRepository):
    """The dead-letter repository on a SQL database (see :class:`~.base.DeadLetterRepository`)."""

    def add(self, letters: Sequence[Mapping[str, Any]], run_id: int | None) -> None:
        now = self.now()
        values = [letter_values(letter, run_id, now) for letter in letters]
        if values:
            self._db.transact(lambda conn: conn.execute(dead_letters.insert(), values))

    def page(self, flow: str, *, offset: int = 0, limit: int = 50,
             include_replayed: bool = False) -> Page[DeadLetter]:
        check_page(offset, limit)
        conditions = [dead_letters.c.flow == flow]
        if not include_replayed:
            conditions.append(dead_letters.c.replayed_at.is_(None))

        def work(conn: Connection) -> Page[DeadLetter]:
            total = conn.execute(sa.select(sa.func.count()).select_from(dead_letters)
                                 .where(*conditions)).scalar_one()
            rows = conn.execute(sa.select(dead_letters).where(*conditions)
                                .order_by(dead_letters.c.id.desc()).offset(offset).limit(limit))
            return Page(items=[dead_letter_record(r) for r in rows], total=int(total),
                        offset=offset, limit=limit)

        return self._db.transact(work, write=False)

    def for_replay(self, flow: str, ids: Iterable[int] | None = None, *,
                   limit: int = 10_000) -> list[DeadLetter]:
        conditions = [dead_letters.c.flow == flow, dead_letters.c.replayed_at.is_(None)]
        if ids is not None:
            conditions.append(dead_letters.c.id.in_(list(ids)))
        return self._db.transact(lambda conn: [dead_letter_record(r) for r in conn.execute(
            sa.select(dead_letters).where(*conditions).order_by(dead_letters.c.id)
            .limit(limit))], write=False)

    def mark_replayed(self, ids: Sequence[int]) -> None:
        if ids:
            now = self.now()
            self._db.transact(lambda conn: conn.execute(
                dead_letters.update().where(dead_letters.c.id.in_(list(ids))).values(
                    replayed_at=now, replay_error=None,
                    replay_attempts=dead_letters.c.replay_attempts + 1)))

    def mark_failed(self, failures: Mapping[int, str]) -> None:
        def work(conn: Connection) -> None:
            for letter_id, error in failures.items():
                conn.execute(dead_letters.update().where(dead_letters.c.id == letter_id).values(
                    replay_error=truncate(error, MAX_ERROR),
                    replay_attempts=dead_letters.c.replay_attempts + 1))

        if failures:
            self._db.transact(work)

    def discard(self, flow: str, ids: Iterable[int] | None = None) -> int:
        conditions = [dead_letters.c.flow == flow, dead_letters.c.replayed_at.is_(None)]
        if ids is not None:
            conditions.append(dead_letters.c.id.in_(list(ids)))
        return int(self._db.transact(
            lambda conn: conn.execute(dead_letters.delete().where(*conditions)).rowcount))
