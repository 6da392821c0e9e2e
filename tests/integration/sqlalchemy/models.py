"""Models the SQLAlchemy connector tests read and write (importable as import strings)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship, validates

#: Mapper events seen, in order: ("before_insert" | "after_insert" | "before_update", email).
EVENTS: list[tuple[str, str]] = []


class Base(DeclarativeBase):
    pass


class Person(Base):
    """A source table: a unique email, a non-unique update time, a decimal."""

    __tablename__ = "people"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    email: Mapped[str] = mapped_column(sa.String(120), unique=True)
    name: Mapped[str | None] = mapped_column(sa.String(80))
    score: Mapped[Decimal] = mapped_column(sa.Numeric(10, 2), default=Decimal("0"))
    updated_at: Mapped[dt.datetime] = mapped_column(sa.DateTime)


class Contact(Base):
    """A sink table with a unique email, a validator and mapper events."""

    __tablename__ = "contacts"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    email: Mapped[str] = mapped_column(sa.String(120), unique=True)
    name: Mapped[str | None] = mapped_column(sa.String(20))
    score: Mapped[Decimal] = mapped_column(sa.Numeric(10, 2), default=Decimal("0"))
    updated_at: Mapped[dt.datetime | None] = mapped_column(sa.DateTime)
    source: Mapped[str] = mapped_column(sa.String(20), default="import")

    @validates("email")
    def _check_email(self, key: str, value: str) -> str:
        if "@" not in value:
            raise ValueError(f"invalid email {value!r}")
        return value.lower()


@event.listens_for(Contact, "before_insert")
def _before_insert(mapper: Any, connection: Any, target: Contact) -> None:
    EVENTS.append(("before_insert", target.email))


@event.listens_for(Contact, "after_insert")
def _after_insert(mapper: Any, connection: Any, target: Contact) -> None:
    EVENTS.append(("after_insert", target.email))


@event.listens_for(Contact, "before_update")
def _before_update(mapper: Any, connection: Any, target: Contact) -> None:
    EVENTS.append(("before_update", target.email))


class Author(Base):
    __tablename__ = "authors"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    name: Mapped[str] = mapped_column(sa.String(80))
    posts: Mapped[list[Post]] = relationship(back_populates="author", order_by="Post.id")


class Post(Base):
    __tablename__ = "posts"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    author_id: Mapped[int] = mapped_column(sa.ForeignKey("authors.id"))
    title: Mapped[str] = mapped_column(sa.String(80))
    author: Mapped[Author] = relationship(back_populates="posts")
    comments: Mapped[list[Comment]] = relationship(order_by="Comment.id")


class Comment(Base):
    __tablename__ = "comments"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    post_id: Mapped[int] = mapped_column(sa.ForeignKey("posts.id"))
    body: Mapped[str] = mapped_column(sa.String(200))


class Reading(Base):
    """A composite primary key, and a column whose attribute name differs from its name."""

    __tablename__ = "readings"

    sensor: Mapped[str] = mapped_column(sa.String(20), primary_key=True)
    taken_at: Mapped[dt.datetime] = mapped_column(sa.DateTime, primary_key=True)
    celsius: Mapped[float] = mapped_column("value_c", sa.Float)


class Namespace:
    """Models nested in a class: their import string has a dotted qualified name."""

    class Tag(Base):
        __tablename__ = "tags"

        id: Mapped[int] = mapped_column(primary_key=True)
        label: Mapped[str] = mapped_column(sa.String(40))


class NotAModel:
    """A plain class: naming it as a model is a configuration error."""


def _next_ticket() -> str:
    _TICKETS.append(len(_TICKETS) + 1)
    return f"T-{_TICKETS[-1]}"


_TICKETS: list[int] = []


class Ticket(Base):
    """A Python-side callable default: only SQLAlchemy's own executemany can apply it."""

    __tablename__ = "tickets"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    code: Mapped[str] = mapped_column(sa.String(20), default=_next_ticket)
    title: Mapped[str] = mapped_column(sa.String(40))
