"""HTTP: a source that pulls a JSON API page by page, and a sink that POSTs batches.

Both go through ``httpx`` (the ``[http]`` extra) with the same client: authentication
(``bearer``, ``basic``, or a token in a named ``header``), a request rate limit, and retries
with exponential backoff on 429, 5xx and transport errors that honour ``Retry-After``.

The source (``http``) follows the API's pagination (``page``, ``offset``, ``cursor`` from the
body, ``next_link`` from the body, or ``link_header``: ``Link: <...>; rel="next"``) and,
with ``cursor_field``, reads incrementally: a message's position is the greatest value of
that field read so far, and a run resuming from it asks the API for records after it
(``cursor_param``, e.g. ``updated_since``). At-least-once: an API whose filter is ``>=``
gives the last record of the previous run again.

The sink (``http``) sends what a batch wrote as JSON arrays (``format="json"``) or JSON-RPC
2.0 batches (``format="jsonrpc"``), at most ``batch_size`` records and ``max_batch_bytes``
per request, each request with an ``Idempotency-Key`` derived from the sink's key prefix
and the request's content: a retried request, and a batch replayed after a crash (the same
records re-read from the flow's cursor), carry the same key, so the receiver can drop the
repeat. Per-record errors in the answer (a JSON-RPC error object, or
``{"errors": [{"index": i, "error": "..."}]}``) go to the flow's ``on_error`` policy.
"""

from __future__ import annotations

import email.utils
import hashlib
import json
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Literal

from pydantic import Field, model_validator

from active_data_flow.connector import (
    ConnectorConfig,
    Sink,
    SinkConfig,
    Source,
    SourceConfig,
    option_error,
)
from active_data_flow.errors import (
    ConfigurationError,
    ConnectorError,
    ConnectorTimeout,
    RecordRejected,
    SinkError,
    SourceError,
)
from active_data_flow.message import Message, Untyped, as_record, record_key
from active_data_flow.registry import register_connector

try:
    import httpx
except ImportError as exc:  # pragma: no cover - the extra is missing
    raise ImportError("the http connectors need httpx: pip install 'active-data-flow[http]'"
                      ) from exc

__all__ = ["HttpSink", "HttpSource"]

_MAX_PAUSE_S = 60.0


class HttpOptions(ConnectorConfig):
    """Options the HTTP source and sink share: where, how to authenticate, how to retry."""

    url: str = Field(pattern=r"^https?://")
    headers: dict[str, str] = Field(default_factory=dict)
    auth: Literal["bearer", "basic", "header"] | None = None
    token: str | None = None
    username: str | None = None
    password: str | None = None
    auth_header: str = "X-API-Key"
    timeout_seconds: float = Field(default=30.0, gt=0)
    max_retries: int = Field(default=5, ge=0, le=100)
    backoff_seconds: float = Field(default=0.5, ge=0)
    requests_per_second: float | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _credentials(self) -> HttpOptions:
        if self.auth in ("bearer", "header") and not self.token:
            raise option_error("token", f"auth={self.auth!r} needs option 'token'")
        if self.auth == "basic" and (self.username is None or self.password is None):
            raise option_error("username", "auth='basic' needs options 'username' and "
                               "'password'")
        return self


class Client:
    """One ``httpx.Client`` with the options' authentication, rate limit and retries."""

    def __init__(self, options: HttpOptions, label: str,
                 error: type[ConnectorError]) -> None:
        self.options, self.label, self.error = options, label, error
        headers = dict(options.headers)
        auth: Any = None
        if options.auth == "bearer":
            headers["Authorization"] = f"Bearer {options.token}"
        elif options.auth == "header":
            headers[options.auth_header] = str(options.token)
        elif options.auth == "basic":
            auth = (options.username or "", options.password or "")
        self.http = httpx.Client(headers=headers, auth=auth, timeout=options.timeout_seconds,
                                 follow_redirects=True)
        self._next_slot = 0.0
        self._lock = threading.Lock()

    def _pace(self) -> None:
        rate = self.options.requests_per_second
        if rate is None:
            return
        with self._lock:
            now = time.monotonic()
            wait = self._next_slot - now
            self._next_slot = max(now, self._next_slot) + 1.0 / rate
        if wait > 0:
            time.sleep(wait)

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """Send, retrying 429, 5xx and transport errors with backoff (``Retry-After``
        honoured); raise ``self.error`` on another 4xx, ``ConnectorTimeout`` when the
        retries ran out."""
        attempt = 0
        while True:
            self._pace()
            problem: str
            retry_after: float | None = None
            try:
                response = self.http.request(method, url, **kwargs)
            except httpx.TransportError as exc:
                problem = f"{type(exc).__name__}: {exc}"
            else:
                if response.status_code < 400:
                    return response
                if response.status_code != 429 and response.status_code < 500:
                    raise self.error(f"{self.label}: {method} {_show(url)} answered "
                                     f"{response.status_code}: {response.text[:300]}")
                problem = f"{method} {_show(url)} answered {response.status_code}"
                retry_after = _retry_after(response.headers.get("retry-after"))
            attempt += 1
            if attempt > self.options.max_retries:
                raise ConnectorTimeout(f"{self.label}: {problem} (after {attempt} attempts)")
            pause = retry_after if retry_after is not None else (
                self.options.backoff_seconds * 2 ** (attempt - 1))
            time.sleep(min(pause, _MAX_PAUSE_S))

    def close(self) -> None:
        self.http.close()


def _show(url: str) -> str:
    return url.split("?", 1)[0]


def _retry_after(value: str | None) -> float | None:
    """Seconds a ``Retry-After`` header asks for (a number or an HTTP date)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _dig(body: Any, path: str | None) -> Any:
    """``body["a"]["b"]`` for path ``a.b`` (``None``: the body; missing: ``None``)."""
    if not path:
        return body
    for part in path.split("."):
        if not isinstance(body, Mapping):
            return None
        body = body.get(part)
    return body


Pagination = Literal["none", "page", "offset", "cursor", "next_link", "link_header"]


@register_connector("http")
class HttpSource(Source):
    """Records from a JSON API, page by page (see the module docstring).

    Options (besides ``url``, ``headers``, ``auth``/``token``/``username``/``password``/
    ``auth_header``, ``timeout_seconds``, ``max_retries``, ``backoff_seconds``,
    ``requests_per_second``):
        params: query parameters of every request.
        records_path: where the records are in the body (``data.items``; default: the
            body is the list).
        pagination: ``none``, ``page``, ``offset``, ``cursor``, ``next_link``,
            ``link_header``.
        page_size: records per page (sent as ``page_size_param`` when set).
        page_param, first_page, offset_param, page_size_param: the page/offset parameters.
        next_cursor_path, next_cursor_param: where a page's body names the next cursor, and
            the parameter that sends it back (``cursor`` pagination).
        next_link_path: where a page's body holds the next page's URL (``next_link``).
        cursor_field: the record field an incremental read follows (e.g. ``updated_at``).
        cursor_param: the parameter sending the saved position (e.g. ``updated_since``).
        max_pages: stop after this many pages (a guard against endless pagination).
    """

    class Config(HttpOptions, SourceConfig):
        params: dict[str, Any] = Field(default_factory=dict)
        records_path: str | None = None
        pagination: Pagination = "none"
        page_size: int | None = Field(default=None, ge=1)
        page_param: str = "page"
        first_page: int = 1
        offset_param: str = "offset"
        page_size_param: str | None = None
        next_cursor_path: str = "next_cursor"
        next_cursor_param: str = "cursor"
        next_link_path: str = "next"
        cursor_field: str | None = None
        cursor_param: str | None = None
        max_pages: int = Field(default=100_000, ge=1)

        @model_validator(mode="after")
        def _incremental(self) -> HttpSource.Config:
            if (self.cursor_field is None) != (self.cursor_param is None):
                raise option_error("cursor_param", "cursor_field and cursor_param go together")
            if self.pagination in ("page", "offset") and self.page_size is None:
                raise option_error("page_size", f"pagination={self.pagination!r} needs "
                                   "option 'page_size' (a short page is the last)")
            return self

    config: Config

    def _setup(self) -> None:
        self._client: Client | None = None

    def each(self, cursor: Any = None) -> Iterator[Message]:
        cfg = self.config
        if cursor is not None and (cfg.cursor_field is None or isinstance(cursor, (
                dict, list, bool))):
            raise ConfigurationError(
                f"{self._label()}: cannot resume from cursor {cursor!r}"
                + ("" if cfg.cursor_field else " (no cursor_field: every run reads it all)"),
                option="cursor")
        if self._client is None:
            self._client = Client(cfg, self._label(), SourceError)
        position = cursor
        for record in self._records(self._client, cursor):
            if cfg.cursor_field is not None:
                value = record.get(cfg.cursor_field)
                if value is not None and (position is None or _after(value, position)):
                    position = value
            yield Untyped(record, position=position)

    def _records(self, client: Client, cursor: Any) -> Iterator[dict[str, Any]]:
        cfg = self.config
        params = dict(cfg.params)
        if cursor is not None and cfg.cursor_param is not None:
            params[cfg.cursor_param] = cursor
        if cfg.page_size is not None and cfg.page_size_param is not None:
            params[cfg.page_size_param] = cfg.page_size
        url: str | None = cfg.url
        page, offset = cfg.first_page, 0
        for _ in range(cfg.max_pages):
            if url is None:
                return
            if cfg.pagination == "page":
                params[cfg.page_param] = page
            elif cfg.pagination == "offset":
                params[cfg.offset_param] = offset
            # (no params at all after a link: httpx would replace the link's own query)
            response = client.request("GET", url, params=params or None)
            try:
                body = response.json()
            except ValueError as exc:
                raise SourceError(f"{self._label()}: GET {_show(url)} did not answer JSON"
                                  ) from exc
            records = _dig(body, cfg.records_path)
            if records is None:
                records = []
            if not isinstance(records, list):
                raise SourceError(f"{self._label()}: records_path {cfg.records_path!r} is not "
                                  f"a list in the answer of GET {_show(url)}")
            for record in records:
                yield record if isinstance(record, dict) else {"value": record}
            # the next page
            if cfg.pagination == "none":
                return
            if cfg.pagination in ("page", "offset"):
                if len(records) < (cfg.page_size or 1):
                    return
                page += 1
                offset += len(records)
            elif cfg.pagination == "cursor":
                token = _dig(body, cfg.next_cursor_path)
                if token in (None, ""):
                    return
                params[cfg.next_cursor_param] = token
            elif cfg.pagination == "next_link":
                link = _dig(body, cfg.next_link_path)
                url, params = (str(httpx.URL(url).join(link)), {}) if link else (None, params)
            else:  # link_header
                link = response.links.get("next", {}).get("url")
                url, params = (str(httpx.URL(url).join(link)), {}) if link else (None, params)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


def _after(value: Any, position: Any) -> bool:
    try:
        return bool(value > position)
    except TypeError:
        return str(value) > str(position)


@register_connector("http")
class HttpSink(Sink):
    """POST records to an HTTP endpoint in batches (see the module docstring).

    Options (besides the shared ones, as for the source):
        format: ``json`` (a JSON array of records) or ``jsonrpc`` (a JSON-RPC 2.0 batch,
            one call of ``rpc_method`` per record, the record as ``params``).
        batch_size: records per request at most.
        max_batch_bytes: bytes of body per request at most (a record alone may exceed it).
        max_batch_seconds: send what is buffered once its oldest record waited this long,
            without waiting for the flow's flush.
        idempotency_header: the header carrying the request's key (``None``: no key).
        idempotency_prefix: the first part of every key (e.g. the flow's name).
    """

    class Config(HttpOptions, SinkConfig):
        format: Literal["json", "jsonrpc"] = "json"
        rpc_method: str = "push"
        batch_size: int = Field(default=500, ge=1, le=100_000)
        max_batch_bytes: int = Field(default=1_000_000, ge=1)
        max_batch_seconds: float | None = Field(default=None, gt=0)
        idempotency_header: str | None = "Idempotency-Key"
        idempotency_prefix: str = "adf"

    config: Config

    def _setup(self) -> None:
        self._client: Client | None = None
        self._pending: list[Message | Mapping[str, Any]] = []
        self._oldest: float | None = None

    def write_batch(self, records: Iterable[Message | Mapping[str, Any]]) -> None:
        before = len(self._pending)
        self._pending.extend(records)
        if self._oldest is None and len(self._pending) > before:
            self._oldest = time.monotonic()
        limit = self.config.max_batch_seconds
        if limit is not None and self._oldest is not None and (
                time.monotonic() - self._oldest >= limit):
            self.flush()

    def flush(self) -> None:
        if not self._pending:
            return
        if self._client is None:
            self._client = Client(self.config, self._label(), SinkError)
        for chunk in self._chunks(self._pending):
            self._send(self._client, chunk)
        self._pending = []
        self._oldest = None

    def discard(self) -> None:
        self._pending = []
        self._oldest = None

    def _chunks(self, records: list[Message | Mapping[str, Any]],
                ) -> Iterator[list[tuple[Message | Mapping[str, Any], str]]]:
        cfg = self.config
        chunk: list[tuple[Message | Mapping[str, Any], str]] = []
        size = 2
        for record in records:
            text = json.dumps(as_record(record), separators=(",", ":"), default=str)
            if chunk and (len(chunk) >= cfg.batch_size
                          or size + len(text) + 1 > cfg.max_batch_bytes):
                yield chunk
                chunk, size = [], 2
            chunk.append((record, text))
            size += len(text) + 1
        if chunk:
            yield chunk

    def _send(self, client: Client, chunk: list[tuple[Message | Mapping[str, Any], str]]
              ) -> None:
        cfg = self.config
        if cfg.format == "json":
            body = "[" + ",".join(text for _, text in chunk) + "]"
        else:
            method = json.dumps(cfg.rpc_method)
            body = "[" + ",".join(
                f'{{"jsonrpc":"2.0","id":{i},"method":{method},"params":{text}}}'
                for i, (_, text) in enumerate(chunk)) + "]"
        headers = {"Content-Type": "application/json"}
        if cfg.idempotency_header:
            digest = hashlib.sha256(body.encode()).hexdigest()[:40]
            headers[cfg.idempotency_header] = f"{cfg.idempotency_prefix}-{digest}"
        response = client.request("POST", cfg.url, content=body.encode(), headers=headers)
        for index, error in self._record_errors(response, len(chunk)):
            record = chunk[index][0]
            self.reject(RecordRejected(f"{self._label()}: the receiver refused record "
                                       f"{index} of its batch: {error}", record=record,
                                       key=record_key(record)))

    def _record_errors(self, response: httpx.Response, count: int,
                       ) -> Iterator[tuple[int, str]]:
        """``(index in the request, why)`` of each record the receiver refused."""
        if not response.content:
            return
        try:
            body = response.json()
        except ValueError:
            return
        if self.config.format == "jsonrpc":
            answers = body if isinstance(body, list) else [body]
            for answer in answers:
                if isinstance(answer, Mapping) and answer.get("error") is not None:
                    index = answer.get("id")
                    if isinstance(index, int) and 0 <= index < count:
                        error = answer["error"]
                        yield index, str(error.get("message") if isinstance(error, Mapping)
                                         else error)
            return
        errors = body.get("errors") if isinstance(body, Mapping) else None
        for item in errors if isinstance(errors, list) else []:
            index = item.get("index") if isinstance(item, Mapping) else None
            if isinstance(index, int) and 0 <= index < count:
                yield index, str(item.get("error", "refused"))

    def close(self) -> None:
        try:
            super().close()
        finally:
            if self._client is not None:
                self._client.close()
                self._client = None

