"""The ``http_inbox`` source: records pushed over HTTP, kept durably in the flow store.

Clients ``POST /inbox/{flow}`` to the web engine (see docs/connectors.md): each record is
committed to the store's ``adf_inbox`` table before the request is answered (202), and a
record whose idempotency key the inbox already holds (a client's retry) is not stored twice.
The flow reads its inbox by id, like any resumable source: its cursor is the last id a
committed batch covers, saved in the sink's transaction when the sink writes to the store's
database (exactly-once), else right after the sinks flushed (at-least-once). Entries up to
the saved cursor are deleted once older than ``retention_seconds`` (keys stay unique for
that long: a retry after it would be stored again).

Pushes are authenticated by a per-flow token, stored only as its SHA-256
(``token_sha256``; ``adf inbox-token`` makes a token and its hash)::

    class Orders(DataFlow):
        source = HttpInboxSource(token_sha256="9f86d0...", schema={"id": "int", "total": "float"})
        sink = SqlAlchemySink(...)
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterator, Mapping
from datetime import timedelta
from typing import Any, Literal

from pydantic import Field

from active_data_flow.connector import Source, SourceConfig
from active_data_flow.errors import ConfigurationError, SchemaError
from active_data_flow.message import Message, Typed, Untyped, model_for
from active_data_flow.registry import register_connector, specs_trusted
from active_data_flow.runtimes.heartbeat.engine.executor import current_run, run_store
from active_data_flow.runtimes.heartbeat.store import Store

__all__ = ["SCHEMA_TYPES", "HttpInboxSource", "PushError", "Pushed", "hash_token", "new_token",
           "parse_push"]

#: The type names a ``schema`` option may use (a trailing ``?`` allows ``null``).
SCHEMA_TYPES: dict[str, Any] = {"str": str, "int": int, "float": float, "bool": bool,
                                "object": dict[str, Any], "array": list[Any], "any": Any}

#: Most records one push may carry.
MAX_RECORDS = 10_000
_KEY_MAX = 200


def hash_token(token: str) -> str:
    """The SHA-256 (hex) of an inbox token: what ``token_sha256`` holds."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> tuple[str, str]:
    """A fresh random inbox token and its hash (``adf inbox-token``)."""
    token = secrets.token_urlsafe(32)
    return token, hash_token(token)


@register_connector("http_inbox")
class HttpInboxSource(Source):
    """Records pushed to the flow over HTTP (``POST /inbox/{flow}``), from the flow store.

    Options:
        token_sha256: SHA-256 (hex) of the token clients send as ``Authorization: Bearer``.
        schema: ``{field: type}`` every pushed record must match (types: str, int, float,
            bool, object, array, any; ``int?`` also allows null). Unknown fields are
            refused. A record that does not match is refused with 422 naming the field.
        key_field: a record field holding its idempotency key (else the request's
            ``Idempotency-Key`` header, with the record's index in a batch).
        retention_seconds: how long read entries are kept (and their keys deduplicate
            retries); 0 deletes them as soon as their batch is committed.
        page_size: entries read per query.
        inbox: the inbox to read (default: the name of the flow being run).
        database: the store's URL outside a stored run (refused in untrusted specs).
    """

    untrusted_ok = True  # reads the run's own store; `database` is refused untrusted

    class Config(SourceConfig):
        token_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
        schema_: dict[str, str] | None = Field(default=None, alias="schema")
        key_field: str | None = None
        retention_seconds: float = Field(default=86_400.0, ge=0)
        page_size: int = Field(default=1000, ge=1, le=100_000)
        inbox: str | None = None
        database: str | None = None

    config: Config

    def _setup(self) -> None:
        if self.config.database is not None and not specs_trusted():
            raise ConfigurationError(
                "http_inbox source: option 'database' cannot be set in a stored or web spec; "
                "the inbox is the flow store of the run", option="database")
        self._schema = schema_model(self.config.schema_)
        self._store: Store | None = None

    def to_dict(self) -> dict[str, Any]:
        spec = super().to_dict()
        config = spec["config"]
        if "schema_" in config:
            config["schema"] = config.pop("schema_")
        return spec

    def _where(self) -> tuple[Store, str]:
        if self._store is None:
            self._store = run_store(self.config.database)
        run = current_run()
        name = self.config.inbox or (run.flow if run is not None else None)
        if name is None:
            raise ConfigurationError(
                "http_inbox source: outside a stored run, option 'inbox' must name the flow "
                "whose inbox to read", option="inbox")
        return self._store, name

    def each(self, cursor: Any = None) -> Iterator[Message]:
        after = _inbox_cursor(cursor)
        store, name = self._where()
        size = self.config.page_size
        schema = self._schema
        while True:
            entries = store.inbox.read(name, after, size)
            for entry in entries:
                if schema is None:
                    yield Untyped(entry.payload, position=entry.id)
                else:
                    yield Typed(entry.payload, schema, position=entry.id)
            if len(entries) < size:
                return
            after = entries[-1].id

    def committed(self, position: Any) -> None:
        store, name = self._where()
        before = store.now() - timedelta(seconds=self.config.retention_seconds)
        store.inbox.purge(name, int(position), before)

    def lag(self, cursor: Any = None) -> int:
        """Entries pushed after ``cursor`` (not read yet)."""
        store, name = self._where()
        return store.inbox.count(name, _inbox_cursor(cursor))


def _inbox_cursor(cursor: Any) -> int | None:
    if cursor is None:
        return None
    if isinstance(cursor, int) and not isinstance(cursor, bool) and cursor >= 0:
        return cursor
    raise ConfigurationError(
        f"http_inbox source: cursor must be an inbox id (a non-negative integer), got "
        f"{cursor!r}", option="cursor")


def schema_model(schema: Mapping[str, str] | None) -> Any:
    """The pydantic model of a ``schema`` option (``None``: no schema).

    Raises:
        ConfigurationError: an unknown type name (``option`` is ``schema``).
    """
    if schema is None:
        return None
    fields: dict[str, Any] = {}
    for name, type_name in schema.items():
        base = type_name.removesuffix("?")
        if base not in SCHEMA_TYPES:
            raise ConfigurationError(
                f"http_inbox source: schema field {name!r} has type {type_name!r}; known: "
                f"{', '.join(SCHEMA_TYPES)} (a trailing '?' allows null)", option="schema")
        fields[name] = SCHEMA_TYPES[base] | None if type_name.endswith("?") else (
            SCHEMA_TYPES[base])
    try:
        return model_for(fields)
    except SchemaError as exc:
        raise ConfigurationError(f"http_inbox source: {exc}", option="schema") from exc


# -- what a push carries ---------------------------------------------------------------
class PushError(Exception):
    """A push the inbox refuses: ``status`` (422 or 400), the field at fault, and the
    JSON-RPC code when the push was a JSON-RPC call."""

    def __init__(self, message: str, *, field: str = "body", status: int = 422,
                 rpc_code: int = -32602) -> None:
        super().__init__(message)
        self.field, self.status, self.rpc_code = field, status, rpc_code


class Pushed:
    """A parsed push: ``(key, record)`` pairs, and the JSON-RPC call ids (``None``: a plain
    JSON push; else one id per call, answered in order)."""

    __slots__ = ("calls", "entries", "rpc")

    def __init__(self) -> None:
        self.entries: list[tuple[str | None, dict[str, Any]]] = []
        self.rpc: Literal["single", "batch"] | None = None
        self.calls: list[tuple[Any, int]] = []  # (rpc id, how many entries the call pushed)


def parse_push(body: Any, config: Mapping[str, Any], request_key: str | None) -> Pushed:
    """The records a ``POST /inbox/{flow}`` body pushes, checked against the source's
    options (``config``: the ``http_inbox`` spec's config).

    A body is one JSON object (a record), a JSON array of records, a JSON-RPC 2.0 call
    (``push`` with ``params: {"record": {...}, "key": ...}``, ``push_batch`` with
    ``params: {"records": [...], "key": ...}``) or an array of such calls. The request's
    ``Idempotency-Key`` is the key of a single record, and ``<key>:<index>`` of a batch's
    records (a call's ``key`` param likewise); ``key_field`` takes a record's own key.

    Raises:
        PushError: naming the field at fault (``3.total``: record 3's field ``total``).
    """
    check = _Checker(schema_model(config.get("schema")), config.get("key_field"))
    pushed = Pushed()
    if _is_rpc(body):
        pushed.rpc, calls = "single", [body]
    elif isinstance(body, list) and body and all(_is_rpc(c) for c in body):
        pushed.rpc, calls = "batch", body
    elif isinstance(body, list):
        check.add(pushed, body, request_key, lambda i: f"{i}.", batch=True)
        return pushed
    else:
        check.add(pushed, [body], request_key, lambda i: "", batch=False)
        return pushed
    for number, call in enumerate(calls):
        where = f"{number}." if pushed.rpc == "batch" else ""
        method, params = call.get("method"), call.get("params")
        if not isinstance(params, Mapping):
            raise PushError("params must be an object", field=f"{where}params")
        key = params.get("key", request_key if pushed.rpc == "single" else None)
        before = len(pushed.entries)
        if method == "push":
            check.add(pushed, [params.get("record")], key,
                      lambda i, w=where: f"{w}params.record.", batch=False)
        elif method == "push_batch":
            if not isinstance(params.get("records"), list):
                raise PushError("params.records must be an array",
                                field=f"{where}params.records")
            check.add(pushed, params["records"], key,
                      lambda i, w=where: f"{w}params.records.{i}.", batch=True)
        else:
            raise PushError(f"unknown method {method!r} (push, push_batch)",
                            field=f"{where}method", rpc_code=-32601)
        pushed.calls.append((call.get("id"), len(pushed.entries) - before))
    return pushed


def _is_rpc(value: Any) -> bool:
    return isinstance(value, Mapping) and value.get("jsonrpc") == "2.0" and "method" in value


class _Checker:
    """Checks records against the schema and gives them their idempotency keys."""

    def __init__(self, schema: Any, key_field: str | None) -> None:
        self.schema, self.key_field = schema, key_field

    def add(self, pushed: Pushed, records: list[Any], key: Any, path: Any, *,
            batch: bool) -> None:
        if len(pushed.entries) + len(records) > MAX_RECORDS:
            raise PushError(f"a push carries at most {MAX_RECORDS} records", status=413)
        if key is not None and (not isinstance(key, str) or not 0 < len(key) <= _KEY_MAX - 12):
            raise PushError(
                f"an idempotency key is a string of 1 to {_KEY_MAX - 12} characters",
                field="key")
        for index, record in enumerate(records):
            at = path(index)
            if not isinstance(record, Mapping):
                raise PushError(f"a record must be a JSON object, got {type(record).__name__}",
                                field=at.rstrip(".") or "body")
            if self.schema is not None:
                try:
                    self.schema.model_validate(record)
                except Exception as exc:
                    raise _schema_refusal(exc, at) from None
            record_key = key if not batch or key is None else f"{key}:{index}"
            if self.key_field is not None:
                value = record.get(self.key_field)
                if value is None:
                    raise PushError(f"the record has no {self.key_field!r} (its idempotency "
                                    "key)", field=f"{at}{self.key_field}")
                record_key = str(value)[:_KEY_MAX]
            pushed.entries.append((record_key, dict(record)))


def _schema_refusal(exc: Exception, at: str) -> PushError:
    errors = getattr(exc, "errors", None)
    if not callable(errors):
        return PushError(str(exc), field=at.rstrip(".") or "body")
    first = errors(include_url=False)[0]
    field = ".".join(str(p) for p in first["loc"]) or "?"
    return PushError(f"field {field!r}: {first['msg']}", field=f"{at}{field}")
