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
from collections.abc import Mapping
from typing import Any

__all__ = ["MASK", "MaskingFilter", "escape_control", "mask", "mask_text", "mask_url", "unmask"]

MASK = "***"

#: Names of secrets, as keys of a mapping or of ``key=value`` / ``"key": "value"`` text.
_SECRET_NAMES = (r"pass(?:word|wd)?|pwd|secret|token|api[_-]?key|apikey|credential"
                 r"|private[_-]?key|authorization")
_SECRET_KEY = re.compile(rf"(?:{_SECRET_NAMES})$|secret|token|api[_-]?key|credential"
                         r"|private[_-]?key|authorization|pwd", re.IGNORECASE)
# scheme://user:password@host  ->  scheme://user:***@host. The password runs to the "@" after
# which the host holds no other "@" (a password written with an unescaped "@" is masked
# whole, not up to its first "@").
_URL_PASSWORD = re.compile(
    r"(?P<head>\b[A-Za-z][A-Za-z0-9+.\-]*://[^\s:/@'\"]*:)(?P<password>[^\s'\"]+?)"
    r"(?=@[^\s@/?#'\"]*(?:[\s/?#'\"]|$))"
)
# user:password@host without a scheme (libpq-style, Redis, logs): the same rule.
_BARE_PASSWORD = re.compile(
    r"(?P<head>(?<![\w/:.@\-])[A-Za-z_][\w.\-]*:)(?P<password>[^\s'\"/@][^\s'\"]*)"
    r"(?=@[A-Za-z0-9][\w.\-]*(?::\d+)?(?:[\s/?#'\")\],;]|$))"
)
# Credentials of an HTTP Authorization header: ``Bearer abc`` anywhere, ``Basic dXNlcjpw``
# after ``Authorization:`` (alone, "basic" is too common a word).
_AUTH_SCHEME = re.compile(
    r"(?P<head>(?:\bauthorization['\"]?\s*[:=]\s*['\"]?(?:Basic|Digest|Bearer)\s+"
    r"|\bBearer\s+))(?P<password>[A-Za-z0-9\-._~+/]+=*)", re.IGNORECASE)
# password=secret, PGPASSWORD=secret, token: abc, "password": "x", 'api_key': 'k'
_KEY_VALUE = re.compile(
    rf"(?P<head>(?P<quote>['\"]?)\b[\w.\-]*?(?:{_SECRET_NAMES})(?P=quote)\s*[:=]\s*)"
    r"(?P<password>\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*'|[^\s&;'\"]+)",
    re.IGNORECASE,
)


def _masked_value(match: re.Match[str]) -> str:
    value = match["password"]
    quote = value[0] if value[:1] in ("'", '"') and len(value) > 1 else ""
    return match["head"] + quote + MASK + quote


def mask_text(text: str) -> str:
    """``text`` with every secret replaced by ``***``: URL passwords, credentials of an
    ``Authorization`` header, and values of secret keys written ``key=value``,
    ``key: value`` or ``"key": "value"`` (``password``, ``PGPASSWORD``, ``token``,
    ``api_key``...)."""
    text = _URL_PASSWORD.sub(lambda m: m["head"] + MASK, text)
    text = _BARE_PASSWORD.sub(lambda m: m["head"] + MASK, text)
    text = _AUTH_SCHEME.sub(lambda m: m["head"] + MASK, text)
    return _KEY_VALUE.sub(_masked_value, text)


# A whole SQLAlchemy URL: the user name runs to the first ":" or "/", the password to the
# "@" after which the host holds no other "@". Masking the whole authority's secret also
# covers characters mask_text stops at (spaces, quotes), which SQLAlchemy leaves unescaped
# when it renders a URL.
_WHOLE_URL = re.compile(r"(?P<head>[\w+]+://[^:/]*:)(?P<password>.*?)"
                        r"(?P<tail>@[^@/?#]*(?:[/?#].*)?)", re.DOTALL)


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


# Control characters (CR and LF above all) in a logged value would start a new log line
# with text an attacker chose: they are written as escapes (``\\r``, ``\\n``, ``\\x1b``).
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def escape_control(text: str) -> str:
    """``text`` with control characters written as escapes, so it stays on one log line."""
    return _CONTROL.sub(lambda m: _ESCAPES.get(m[0]) or f"\\x{ord(m[0]):02x}", text)


def _log_value(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float)):
        return value  # keeps %d and %f working
    return escape_control(mask_text(str(value)))


class MaskingFilter(logging.Filter):
    """A logging filter for every handler: masks secrets in messages, values and exception
    texts, and escapes control characters in every logged value (so a CR/LF an attacker
    put in a path or a name cannot forge a log line).

    The message template is the program's own and keeps its line breaks; the values merged
    into it (``record.args``) are masked and escaped one by one, and stay separate, so
    formatters that read them (uvicorn's access log) still work.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, Mapping):
            record.args = {k: _log_value(v) for k, v in record.args.items()}
        elif record.args:
            record.args = tuple(_log_value(v) for v in record.args)
        if isinstance(record.msg, str):
            text = mask_text(record.msg)
            # Without values, the message itself may hold one: escape all but line breaks
            # the program wrote on purpose... unless they come with a CR (never intended).
            record.msg = text if record.args else _CONTROL.sub(
                lambda m: m[0] if m[0] == "\n" else escape_control(m[0]), text)
        else:
            record.msg = _log_value(record.msg)
        if record.exc_info and record.exc_info[1] is not None and not record.exc_text:
            formatter = logging.Formatter()
            record.exc_text = mask_text(formatter.formatException(record.exc_info))
        return True
