"""The store's tagged JSON: every value a built-in source produces comes back as it was,
through plain JSON text, and JSON's own values are stored as they are."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from active_data_flow.runtimes.heartbeat.store.codec import decode, encode, encode_column
from tests.message_values import same, values

plain_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.text(max_size=5).filter(lambda k: k != "$adf"), inner, max_size=3),
    max_leaves=10)


@given(values)
def test_every_value_round_trips_through_json_text(value: Any) -> None:
    text = json.dumps(encode(value), allow_nan=False)  # strict JSON: no NaN literal
    assert same(decode(json.loads(text)), value)


@given(plain_json)
def test_json_values_are_stored_as_they_are(value: Any) -> None:
    assert encode(value) == value
    assert decode(value) == value


def test_the_format_is_readable_tagged_json() -> None:
    when = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    message = {"id": 7, "updated_at": when, "price": Decimal("1.10"), "ratio": float("nan"),
               "blob": b"\x00\xff", "key": uuid.UUID(int=1), "day": dt.date(2024, 5, 1),
               "at": dt.time(9, 30), "tags": ["a", {"$adf": "not mine"}],
               "host": ipaddress.ip_address("10.0.0.1"), "wait": dt.timedelta(seconds=90)}
    assert encode(message) == {
        "id": 7,
        "updated_at": {"$adf": "datetime", "v": "2024-05-01T12:00:00+02:00"},
        "price": {"$adf": "decimal", "v": "1.10"},
        "ratio": {"$adf": "float", "v": "nan"},
        "blob": {"$adf": "bytes", "v": "AP8="},
        "key": {"$adf": "uuid", "v": "00000000-0000-0000-0000-000000000001"},
        "day": {"$adf": "date", "v": "2024-05-01"},
        "at": {"$adf": "time", "v": "09:30:00"},
        "tags": ["a", {"$adf": "dict", "v": [["$adf", "not mine"]]}],
        "host": {"$adf": "ip", "v": "10.0.0.1"},
        "wait": {"$adf": "timedelta", "v": [0, 90, 0]},
    }
    assert same(decode(encode(message)), message)


def test_tuples_become_lists_and_odd_keys_survive() -> None:
    assert decode(encode((1, 2))) == [1, 2]
    assert decode(encode({1: "one", (2, 3): "pair"})) == {1: "one", (2, 3): "pair"}
    assert decode(encode(bytearray(b"ab"))) == b"ab"


def test_an_unknown_type_is_kept_as_its_repr_and_an_unknown_tag_as_it_is() -> None:
    class Point:
        def __repr__(self) -> str:
            return "Point(1, 2)"

    stored = encode({"p": Point()})
    assert stored["p"]["type"].endswith("Point")
    assert decode(stored) == {"p": "Point(1, 2)"}
    assert decode({"$adf": "from-the-future", "v": 1}) == {"$adf": "from-the-future", "v": 1}


@given(st.integers() | st.floats(allow_nan=True, allow_infinity=True))
def test_a_number_alone_in_a_column_is_tagged(number: Any) -> None:
    stored = encode_column(number)
    assert isinstance(stored, dict)
    assert same(decode(json.loads(json.dumps(stored, allow_nan=False))), number)
    assert encode_column(True) is True
    assert encode_column([1]) == [1]


def test_the_documented_example_runs() -> None:
    docs = Path(__file__).parents[5] / "docs" / "heartbeat.md"
    section = docs.read_text().split("### Dead letters", 1)[1].split("\n### ", 1)[0]
    [block] = section.split("```python\n")[1:]
    exec(compile(block.split("```", 1)[0], str(docs), "exec"), {})
