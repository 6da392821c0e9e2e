"""Names every part of the database layer shares."""

from __future__ import annotations

import logging
from typing import Literal, TypeVar

__all__ = ["DEFAULT_NAME", "DEFAULT_URL", "Profile", "Role", "T", "log"]

log = logging.getLogger(__name__)

T = TypeVar("T")

Role = Literal["source", "sink"]
Profile = Literal["connector", "store"]

DEFAULT_NAME = "default"
DEFAULT_URL = "sqlite:///active_data_flow.db"
