"""Hide secrets before anything reaches a page, an API response, an error or a log line.

Two kinds of secrets hide in flow specs and error texts: passwords inside URLs
(``postgresql://app:s3cret@db/prod``) and values under keys that name a secret
(``password``, ``token``, ``api_key``...). Both become :data:`MASK`. When a masked spec
comes back from an edit form, :func:`unmask` puts the stored secrets back in place, so a
user can edit a flow without retyping (or ever seeing) its password.

This is the one masking rule of the package: the web pages, the CLI and the database layer
of the SQLAlchemy connectors all mask through it. It is part of the core, so it uses the
standard library only; :func:`mask_url` accepts a SQLAlchemy ``URL`` by its duck type.
"""

from __future__ import annotations

import logging
import re
from typing import Any

__all__ = ["MASK", "MaskingFilter", "mask", "mask_text", "mask_url", "unmask"]

MASK = "***"

_SECRET_KEY = re.compile(r"pass(word|wd)?$|secret|token|api[_-]?key|credential|private[_-]?key",
                         re.IGNORECASE)
# scheme://user:password@host  ->  scheme://user:***@host
_URL_PASSWORD = re.compile(
    r"(?P<head>\b[A-Za-z][A-Za-z0-9+.\-]*://[^\s:/@'\"]*:)(?P<password>[^\s@'\"]+)(?=@)"
)
# password=secret in DSNs and query strings
_KEY_VALUE = re.compile(r"(?P<head>\b(?:password|passwd|pwd)\s*=\s*)(?P<password>[^\s&;'\"]+)",
                        re.IGNORECASE)


def mask_text(text: str) -> str:
    """``text`` with URL passwords and ``password=...`` values replaced by ``***``."""
    text = _URL_PASSWORD.sub(lambda m: m["head"] + MASK, text)
    return _KEY_VALUE.sub(lambda m: m["head"] + MASK, text)


# A whole SQLAlchemy URL, split where SQLAlchemy's own parser splits it (``make_url``): the
# user name runs to the first ":" or "/", the password to the first "@". Masking exactly what
# SQLAlchemy would send as the password also covers characters mask_text stops at (spaces,
# quotes), which SQLAlchemy leaves unescaped when it renders a URL.
_WHOLE_URL = re.compile(r"(?P<head>[\w+]+://[^:/]*:)(?P<password>[^@]*)(?P<tail>@.*)", re.DOTALL)


def mask_url(url: Any) -> str:
    """A database URL (or a text holding URLs) as it may be shown: password as ``***``.

    Args:
        url: a SQLAlchemy ``URL`` (anything with ``render_as_string(hide_password=...)``),
            a URL string, or any text, which goes through :func:`mask_text`.

    Returns:
        ``postgresql://app:***@db/prod`` for ``postgresql://app:s3cret@db/prod``; a string
        that is not one URL comes back as :func:`mask_text` gives it.

    .. versionadded:: 0.2
    """
    render = getattr(url, "render_as_string", None)
    if callable(render):
        return str(render(hide_password=True))
    text = str(url)
    whole = _WHOLE_URL.fullmatch(text)
    if whole is None:
        return mask_text(text)
    # The tail may hold more secrets: ``?password=...`` or a second URL.
    return whole["head"] + MASK + mask_text(whole["tail"])


def mask(value: Any) -> Any:
    """A copy of a JSON-like value with every secret masked (see the module docs)."""
    if isinstance(value, str):
        return mask_text(value)
    if isinstance(value, dict):
        return {k: (MASK if _is_secret(k, v) else mask(v)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [mask(v) for v in value]
    return value


def _is_secret(key: Any, value: Any) -> bool:
    return (isinstance(key, str) and bool(_SECRET_KEY.search(key))
            and value not in (None, "") and not isinstance(value, (bool, dict, list)))


def unmask(new: Any, stored: Any) -> Any:
    """``new`` with each masked secret replaced by the value ``stored`` holds at the same
    place, provided masking that stored value gives exactly what ``new`` holds there."""
    if isinstance(new, dict) and isinstance(stored, dict):
        out = {}
        for key, value in new.items():
            if key in stored and value == MASK and _is_secret(key, stored[key]):
                out[key] = stored[key]
            else:
                out[key] = unmask(value, stored.get(key))
        return out
    if isinstance(new, list) and isinstance(stored, list):
        return [unmask(v, stored[i]) if i < len(stored) else v for i, v in enumerate(new)]
    if isinstance(new, str) and isinstance(stored, str) and MASK in new:
        return stored if mask_text(stored) == new else new
    return new


class MaskingFilter(logging.Filter):
    """A logging filter that masks secrets in messages (and in exception texts)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.args:
            record.msg = record.getMessage()
            record.args = None
        if isinstance(record.msg, str):
            record.msg = mask_text(record.msg)
        if record.exc_info and record.exc_info[1] is not None and not record.exc_text:
            formatter = logging.Formatter()
            record.exc_text = mask_text(formatter.formatException(record.exc_info))
        return True
