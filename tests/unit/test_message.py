"""Messages: Untyped is a dict with metadata; Typed validates on construction and assignment."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, field_validator

from active_data_flow.errors import SchemaError
from active_data_flow.message import Message, Row, Typed, Untyped, as_record


class User(BaseModel):
    id: int
    email: str
    born: dt.date | None = None

    @field_validator("email")
    @classmethod
    def must_have_at(cls, value: str) -> str:
        if "@" not in value:
            raise ValueError("not an email address")
        return value


def test_untyped_supports_the_message_interface() -> None:
    m = Untyped({"id": 1}, metadata={"source": "test"})
    m["name"] = "Ada"
    assert m["id"] == 1
    assert "name" in m
    assert m.get("missing", 7) == 7
    assert m.data == {"id": 1, "name": "Ada"}
    assert m.metadata == {"source": "test"}
    assert m.to_dict() == {"id": 1, "name": "Ada"}
    assert type(m.to_dict()) is dict
    assert isinstance(m, Message)


def test_untyped_copies_its_input_so_sources_stay_untouched() -> None:
    record = {"id": 1}
    m = Untyped(record)
    m["id"] = 2
    assert record == {"id": 1}


def test_untyped_rejects_non_mappings() -> None:
    with pytest.raises(SchemaError, match="mapping"):
        Untyped(42)  # type: ignore[arg-type]


def test_row_is_an_untyped_message_with_defaults() -> None:
    row = Row({"a": 1})
    assert isinstance(row, Untyped)
    assert row.position is None
    assert row.metadata == {}
    row.position = 3
    assert row.position == 3
    assert as_record(row) is row


def test_typed_with_a_mapping_schema_converts_and_validates() -> None:
    m = Typed({"id": "7", "name": "Ada"}, schema={"id": int, "name": str})
    assert m["id"] == 7
    assert m.data == {"id": 7, "name": "Ada"}


def test_typed_with_a_pydantic_model_runs_its_validators() -> None:
    with pytest.raises(SchemaError) as err:
        Typed({"id": 1, "email": "nope"}, schema=User)
    assert err.value.fields == ("email",)
    assert "not an email address" in str(err.value)


def test_typed_validates_on_assignment_and_keeps_the_old_value() -> None:
    m = Typed({"id": 1, "email": "a@b.c"}, schema=User)
    with pytest.raises(SchemaError, match="'id'"):
        m["id"] = "seven"
    assert m["id"] == 1
    m["born"] = "1990-01-02"
    assert m["born"] == dt.date(1990, 1, 2)


def test_typed_mapping_schema_rejects_unknown_and_missing_fields() -> None:
    with pytest.raises(SchemaError) as err:
        Typed({"id": 1, "extra": 2}, schema={"id": int, "name": str})
    assert set(err.value.fields) == {"extra", "name"}
    m = Typed({"id": 1}, schema={"id": int})
    with pytest.raises(SchemaError, match="'other'"):
        m["other"] = 1


def test_typed_strict_refuses_conversions() -> None:
    with pytest.raises(SchemaError, match="'id'"):
        Typed({"id": "7"}, schema={"id": int}, strict=True)


def test_typed_needs_a_valid_schema() -> None:
    with pytest.raises(SchemaError, match="schema"):
        Typed({"a": 1})
    with pytest.raises(SchemaError, match="schema"):
        Typed({"a": 1}, schema=[int])  # type: ignore[arg-type]
    with pytest.raises(SchemaError, match="identifier"):
        Typed({"a b": 1}, schema={"a b": int})


def test_messages_compare_by_fields() -> None:
    assert Untyped({"a": 1}) == {"a": 1}
    assert Typed({"a": 1}, schema={"a": int}) == Untyped({"a": 1})
    assert Untyped({"a": 1}) != Untyped({"a": 2})


# -- properties ---------------------------------------------------------------------------
FIELD_TYPES: dict[type, Any] = {
    int: st.integers(),
    str: st.text(),
    bool: st.booleans(),
    float: st.floats(allow_nan=False),
}
# Values pydantic's lax mode can never turn into the given type.
INVALID: dict[type, Any] = {
    int: st.one_of(st.text(alphabet="xyz", min_size=1), st.lists(st.integers(), min_size=1)),
    str: st.one_of(st.lists(st.text(), min_size=1), st.dictionaries(st.text(), st.integers(),
                                                                    min_size=1)),
    bool: st.one_of(st.text(alphabet="xyz", min_size=2), st.lists(st.booleans(), min_size=1)),
    float: st.one_of(st.text(alphabet="xyz", min_size=1), st.lists(st.floats(), min_size=1)),
}
names = st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True)


@st.composite
def schema_and_record(draw: st.DrawFn) -> tuple[dict[str, type], dict[str, Any]]:
    schema = draw(st.dictionaries(names, st.sampled_from(list(FIELD_TYPES)), min_size=1,
                                  max_size=6))
    record = {name: draw(FIELD_TYPES[tp]) for name, tp in schema.items()}
    return schema, record


@given(schema_and_record())
def test_valid_records_round_trip_through_typed(
    case: tuple[dict[str, type], dict[str, Any]],
) -> None:
    schema, record = case
    m = Typed(record, schema=schema)
    assert m.to_dict() == record
    assert Typed(m.to_dict(), schema=schema) == m


@given(schema_and_record(), st.data())
def test_every_invalid_field_is_rejected_by_name(
    case: tuple[dict[str, type], dict[str, Any]], data: st.DataObject
) -> None:
    schema, record = case
    bad = data.draw(st.lists(st.sampled_from(sorted(schema)), min_size=1, unique=True))
    for name in bad:
        record[name] = data.draw(INVALID[schema[name]])
    with pytest.raises(SchemaError) as err:
        Typed(record, schema=schema)
    assert {f.split(".")[0] for f in err.value.fields} == set(bad)
    for name in bad:
        assert repr(name) in str(err.value)


@given(schema_and_record(), st.data())
def test_invalid_assignment_is_rejected_by_name(
    case: tuple[dict[str, type], dict[str, Any]], data: st.DataObject
) -> None:
    schema, record = case
    m = Typed(record, schema=schema)
    name = data.draw(st.sampled_from(sorted(schema)))
    with pytest.raises(SchemaError) as err:
        m[name] = data.draw(INVALID[schema[name]])
    assert err.value.fields[0].split(".")[0] == name
    assert m.to_dict() == record


@given(st.dictionaries(st.text(), st.integers() | st.text() | st.none()))
def test_untyped_round_trips_any_mapping(record: dict[str, Any]) -> None:
    assert Untyped(record).to_dict() == record
