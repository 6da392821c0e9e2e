"""Every kind of value a built-in source puts in a message (hypothesis strategies), and a
strict comparison: same type, same value (NaN equal to NaN, datetimes by wall time and
offset)."""

from __future__ import annotations

import datetime as dt
import math
from decimal import Decimal
from typing import Any

from hypothesis import strategies as st

# Offsets as databases give them: whole minutes, within a day.
offsets = st.integers(min_value=-(23 * 60 + 59), max_value=23 * 60 + 59).map(
    lambda minutes: dt.timezone(dt.timedelta(minutes=minutes)))

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(),
    st.datetimes(),
    st.datetimes(timezones=st.one_of(st.just(dt.UTC), offsets, st.timezones())),
    st.dates(),
    st.times(),
    st.times(timezones=offsets),
    st.timedeltas(),
    st.decimals(allow_nan=True, allow_infinity=True),
    st.uuids(),
    st.binary(),
)

keys = st.one_of(st.text(max_size=8), st.just("$adf"), st.just("v"))

values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(keys, inner, max_size=4)),
    max_leaves=12,
)

#: A message: a dict of field names to any of those values.
messages = st.dictionaries(st.text(min_size=1, max_size=10), values, max_size=6)


def same(a: Any, b: Any) -> bool:
    """``a`` and ``b`` are of the same type and equal (NaN included; aware datetimes and
    times by wall time and UTC offset)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return (math.isnan(a) and math.isnan(b)) or a == b
    if isinstance(a, Decimal):
        return str(a) == str(b)  # NaNs included; 1.10 is not 1.1
    if isinstance(a, (dt.datetime, dt.time)):
        return (a.replace(tzinfo=None) == b.replace(tzinfo=None)
                and a.utcoffset() == b.utcoffset())
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)
