"""A model module that untrusted specs must never import (the tests check sys.modules)."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class SecretBase(DeclarativeBase):
    pass


class Secret(SecretBase):
    __tablename__ = "secrets"

    id: Mapped[int] = mapped_column(primary_key=True)
    value: Mapped[str] = mapped_column(sa.String(40))
