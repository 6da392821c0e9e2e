"""Tagged JSON: the values of a message kept in a JSON column, and given back as they were.

Dead letters keep the message a flow could not handle, to be replayed later through the
same transform: a replayed message must hold the same Python values as the original one
(a ``datetime`` stays a ``datetime``, a ``Decimal`` a ``Decimal``). :func:`encode` turns a
value into plain JSON, :func:`decode` turns that JSON back; ``decode(encode(v)) == v`` for
every value a built-in source produces.

The format. JSON's own values are kept as they are, so a stored letter stays readable:
``None``, ``bool``, ``int``, ``str``, finite ``float``, lists (a tuple becomes a list) and
dicts with string keys. Any other value becomes an object with the key ``"$adf"`` naming its
type, and ``"v"`` holding it:

=============  ==========================================  ===============================
``$adf``       ``v``                                         Python value
=============  ==========================================  ===============================
``datetime``   ISO 8601 (``2024-05-01T12:00:00+02:00``;      ``datetime.datetime`` (with or
               no offset when naive)                         without tzinfo)
``date``       ``2024-05-01``                                ``datetime.date``
``time``       ``12:00:00.000001`` (offset when aware)       ``datetime.time``
``timedelta``  ``[days, seconds, microseconds]``             ``datetime.timedelta``
``decimal``    its text (``"1.10"``, ``"NaN"``, ``"-Infinity"``)  ``decimal.Decimal``
``float``      ``"nan"``, ``"inf"`` or ``"-inf"``            ``float`` (JSON has none)
``uuid``       ``"0e4f...-..."``                             ``uuid.UUID``
``bytes``      base64 (standard alphabet)                    ``bytes`` (from ``bytes``,
                                                             ``bytearray``, ``memoryview``)
``ip``         ``"10.0.0.1"``, ``"::1"``                     ``ipaddress.ip_address``
``ipnet``      ``"10.0.0.0/8"``                              ``ipaddress.ip_network``
``ipif``       ``"10.0.0.1/8"``                              ``ipaddress.ip_interface``
``dict``       ``[[key, value], ...]`` (each encoded)        ``dict`` whose keys are not all
                                                             strings, or that has a
                                                             ``"$adf"`` key of its own
``repr``       ``repr(value)``, with ``"type"`` naming the   ``str`` (any other value: kept
               value's class                                 for reading, not as it was)
=============  ==========================================  ===============================

An object with an unknown ``$adf`` tag (from a later version) is given back as it is.

A number standing alone in a column is tagged too, by :func:`encode_column`
(``{"$adf": "int", "v": "12"}``, ``{"$adf": "float", "v": "0.5"}``): SQLite stores a bare
JSON number as an SQL number, which loses ``0.0``'s type and a big integer's digits.
"""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import math
import uuid
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

__all__ = ["TAG", "decode", "encode", "encode_column"]

#: The key that marks an encoded value.
TAG = "$adf"

_IP_ADDRESS = (ipaddress.IPv4Address, ipaddress.IPv6Address)
_IP_NETWORK = (ipaddress.IPv4Network, ipaddress.IPv6Network)
_IP_INTERFACE = (ipaddress.IPv4Interface, ipaddress.IPv6Interface)


def _tagged(tag: str, value: Any) -> dict[str, Any]:
    return {TAG: tag, "v": value}


def encode(value: Any) -> Any:
    """``value`` as plain JSON (see the module's table); JSON values are kept as they are."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else _tagged("float", repr(value))
    if isinstance(value, Mapping):
        if all(isinstance(k, str) for k in value) and TAG not in value:
            return {k: encode(v) for k, v in value.items()}
        return _tagged("dict", [[encode(k), encode(v)] for k, v in value.items()])
    if isinstance(value, (list, tuple)):
        return [encode(v) for v in value]
    # datetime before date: a datetime is a date.
    if isinstance(value, dt.datetime):
        return _tagged("datetime", value.isoformat())
    if isinstance(value, dt.date):
        return _tagged("date", value.isoformat())
    if isinstance(value, dt.time):
        return _tagged("time", value.isoformat())
    if isinstance(value, dt.timedelta):
        return _tagged("timedelta", [value.days, value.seconds, value.microseconds])
    if isinstance(value, Decimal):
        return _tagged("decimal", str(value))
    if isinstance(value, uuid.UUID):
        return _tagged("uuid", str(value))
    if isinstance(value, (bytes, bytearray, memoryview)):
        return _tagged("bytes", base64.b64encode(bytes(value)).decode("ascii"))
    if isinstance(value, _IP_INTERFACE):  # before addresses: an interface is an address
        return _tagged("ipif", str(value))
    if isinstance(value, _IP_ADDRESS):
        return _tagged("ip", str(value))
    if isinstance(value, _IP_NETWORK):
        return _tagged("ipnet", str(value))
    kind = type(value)
    return {TAG: "repr", "type": f"{kind.__module__}.{kind.__qualname__}", "v": repr(value)}


def encode_column(value: Any) -> Any:
    """``value`` as :func:`encode` gives it, for a JSON column of its own: a number is
    tagged too (see the module's docstring)."""
    encoded = encode(value)
    if isinstance(encoded, bool) or not isinstance(encoded, (int, float)):
        return encoded
    return _tagged("int", str(encoded)) if isinstance(encoded, int) else _tagged(
        "float", repr(encoded))


def _dict(pairs: Any) -> dict[Any, Any]:
    return {_hashable(decode(k)): decode(v) for k, v in pairs}


def _hashable(key: Any) -> Any:
    return tuple(key) if isinstance(key, list) else key


_DECODERS: dict[str, Callable[[Any], Any]] = {
    "datetime": dt.datetime.fromisoformat,
    "date": dt.date.fromisoformat,
    "time": dt.time.fromisoformat,
    "timedelta": lambda v: dt.timedelta(days=v[0], seconds=v[1], microseconds=v[2]),
    "decimal": Decimal,
    "float": float,
    "int": int,
    "uuid": uuid.UUID,
    "bytes": lambda v: base64.b64decode(v.encode("ascii")),
    "ip": ipaddress.ip_address,
    "ipnet": ipaddress.ip_network,
    "ipif": ipaddress.ip_interface,
    "dict": _dict,
    "repr": str,
}


def decode(value: Any) -> Any:
    """The Python value :func:`encode` made ``value`` from."""
    if isinstance(value, list):
        return [decode(v) for v in value]
    if not isinstance(value, dict):
        return value
    tag = value.get(TAG)
    if isinstance(tag, str) and "v" in value and tag in _DECODERS:
        return _DECODERS[tag](value["v"])
    return {k: decode(v) for k, v in value.items()}
