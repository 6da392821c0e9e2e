"""Runtimes decide where and when a flow runs; Runners run it.

:class:`Runner` holds the read-transform-write loop every runtime shares. It reads the
source in batches; for each batch it applies the transform, writes the results to every
sink, flushes them, and only then checkpoints the batch's end position. A crash therefore
re-reads at most the batch in flight, and a cursor never covers unwritten data.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from itertools import islice
from typing import Any, ClassVar, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator

from active_data_flow.connector import Configurable, Sink, Source, _split_spec
from active_data_flow.errors import ConfigurationError, FlowRunError, RecordRejected
from active_data_flow.flow import DataFlow, RunResult
from active_data_flow.message import Message, Untyped, as_record

__all__ = ["Checkpoint", "Runner", "Runtime", "RuntimeConfig", "call_hook"]

log = logging.getLogger(__name__)

_CRON_FIELD = re.compile(r"^[\d*/,\-A-Za-z?LW#]+$")


class Checkpoint:
    """Where a run saves its cursor after each durable batch.

    A plain callable ``checkpoint(cursor)`` works too; subclass this to also commit the cursor
    *inside* the sink's transaction when the sink writes to the same database (exactly-once):
    the runner then calls ``sink.flush_with(lambda handle: checkpoint.within(handle, cursor))``
    and falls back to ``checkpoint(cursor)`` after the flush when ``within`` returns False.
    """

    def __call__(self, cursor: Any) -> None:
        """Save ``cursor``; the batch it covers is already durable."""
        raise NotImplementedError

    def within(self, handle: Any, cursor: Any) -> bool:
        """Save ``cursor`` through the sink's transaction ``handle`` if it can; say whether."""
        return False


class RuntimeConfig(BaseModel):
    """Options every runtime accepts.

    Attributes:
        batch_size: the most messages per batch; the cursor is checkpointed after each
            batch. The default, 10,000, keeps the per-commit cost of database sinks small
            (one durable commit per 1,000 rows costs PostgreSQL about a third of its
            throughput); a crash re-reads at most one batch.
        batch_seconds: a batch also ends once it has taken this long (checked every few
            hundred messages), so slow sources and transforms still checkpoint often.
            ``None``: only ``batch_size`` ends a batch.
        enabled: a disabled runtime's flows are never run by a scheduler.
        interval: how often a scheduled flow is due: seconds, or a cron expression
            (five fields, e.g. ``"*/5 * * * *"``). ``None`` means on demand only.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    batch_size: int = Field(default=10_000, ge=1, le=1_000_000)
    batch_seconds: float | None = Field(default=5.0, gt=0)
    enabled: bool = True
    interval: float | str | None = None

    @field_validator("interval")
    @classmethod
    def _check_interval(cls, value: float | str | None) -> float | str | None:
        if isinstance(value, str):
            fields = value.split()
            if len(fields) not in (5, 6) or not all(_CRON_FIELD.match(f) for f in fields):
                raise ValueError(f"not a number of seconds or a cron expression: {value!r}")
        elif value is not None and value <= 0:
            raise ValueError("must be a positive number of seconds")
        return value


class Runtime(Configurable):
    """Base class of runtimes.

    ``Runtime(**options)`` validates its options like a connector does; subclasses extend
    ``Config`` and provide a :class:`Runner`. ``execute(flow)`` is the runtime's way of
    running a flow: inline runs it now, a scheduler records it, Celery enqueues it.
    """

    type_name: ClassVar[str] = ""
    Config: ClassVar[type[RuntimeConfig]] = RuntimeConfig
    config: RuntimeConfig
    _kind = "runtime"
    _register_with = "@register_runtime(...)"

    @property
    def batch_size(self) -> int:
        """Messages per batch and checkpoint."""
        return self.config.batch_size

    @property
    def enabled(self) -> bool:
        """Whether schedulers run flows on this runtime."""
        return self.config.enabled

    @property
    def interval(self) -> float | str | None:
        """Seconds between runs, a cron expression, or ``None`` (on demand)."""
        return self.config.interval

    def runner(self) -> Runner:
        """The runner that executes flows for this runtime."""
        return Runner(self)

    def execute(self, flow: DataFlow, **options: Any) -> Any:
        """Run ``flow`` the way this runtime runs flows (inline: now, in this process)."""
        return self.runner().run(flow, **options)

    @classmethod
    def from_dict(cls, spec: Mapping[str, Any]) -> Self:
        """Build the runtime a spec describes, resolving its type through the registry."""
        from active_data_flow.registry import runtime_class

        type_name, config = _split_spec(spec, "runtime")
        klass = runtime_class(type_name)
        if not issubclass(klass, cls):
            raise ConfigurationError(
                f"runtime type {type_name!r} is not a {cls.__qualname__}", option="type"
            )
        return klass(**config)


#: Messages read between two looks at the clock (see ``batch_seconds``).
_CHUNK = 500


class _Tally:
    """Running counts of one run (mutable; frozen into a RunResult on demand)."""

    __slots__ = ("batches", "cursor", "failed", "read", "skipped", "started", "written")

    def __init__(self, cursor: Any) -> None:
        self.read = self.written = self.skipped = self.failed = self.batches = 0
        self.cursor = cursor
        self.started = time.perf_counter()

    def result(self, flow: str, interrupted: bool = False) -> RunResult:
        return RunResult(
            flow=flow, read=self.read, written=self.written, skipped=self.skipped,
            failed=self.failed, duration_s=time.perf_counter() - self.started,
            cursor=self.cursor, batches=self.batches, interrupted=interrupted,
        )


class Runner:
    """Runs a flow: the read-transform-write loop with per-batch checkpoints.

    Runtimes subclass it to add bookkeeping around :meth:`run` (recording runs, leases,
    retries); the loop itself stays here.
    """

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def run(
        self,
        flow: DataFlow,
        *,
        cursor: Any = None,
        checkpoint: Callable[[Any], None] | None = None,
        on_progress: Callable[[RunResult], None] | None = None,
        stop: threading.Event | None = None,
        hooks: bool = True,
    ) -> RunResult:
        """Run ``flow`` to the end of its source (see :meth:`DataFlow.run`).

        ``hooks=False`` skips ``after_success``/``after_failure``: a runtime that retries or
        records runs calls them itself, once per run, after recording the outcome.
        """
        tally = _Tally(cursor)
        try:
            interrupted = self._loop(flow, tally, checkpoint, on_progress, stop)
        except Exception as exc:
            result = tally.result(flow.name)
            error = FlowRunError(
                f"{type(exc).__name__}: {exc} (flow {flow.name!r} failed after "
                f"{result.read} message(s); resume after cursor {result.cursor!r})",
                flow=flow.name,
                result=result,
            )
            error.__cause__ = exc
            if hooks:
                call_hook(flow.after_failure, error)
            raise error from exc
        result = tally.result(flow.name, interrupted)
        if hooks:
            call_hook(flow.after_success, result)
        return result

    def _loop(
        self,
        flow: DataFlow,
        tally: _Tally,
        checkpoint: Callable[[Any], None] | None,
        on_progress: Callable[[RunResult], None] | None,
        stop: threading.Event | None,
    ) -> bool:
        source = flow.build_source()
        sinks = flow.build_sinks()
        dead = flow.build_dead_letter_sink()
        all_sinks = [*sinks, dead] if dead is not None else sinks
        size = flow.effective_batch_size()
        if flow.on_error != "fail":
            for sink in sinks:
                sink.on_reject = lambda err: self._on_reject(flow, err, tally, dead)
        ok = False
        try:
            messages = source.each(tally.cursor)
            while True:
                out, count, position = self._read_batch(flow, messages, size, tally, dead)
                if not count:
                    break
                if out:
                    for sink in sinks:
                        sink.write_batch(out)
                self._commit(sinks, dead, position, checkpoint)
                # The batch is durable and the cursor saved; only now does the tally move.
                tally.read += count
                tally.written += len(out)
                tally.batches += 1
                if position is not None:
                    tally.cursor = position
                if on_progress is not None:
                    on_progress(tally.result(flow.name))
                if stop is not None and stop.is_set():
                    ok = True
                    return True
            ok = True
            return False
        finally:
            _close_all(source, all_sinks, ok)

    def _commit(
        self,
        sinks: list[Sink],
        dead: Sink | None,
        position: Any,
        checkpoint: Callable[[Any], None] | None,
    ) -> None:
        """Flush every sink, then save the cursor (in the last sink's transaction if possible).

        Dead letters are flushed first: a message is never counted as handled before the
        record of its failure is stored.
        """
        if dead is not None:
            dead.flush()
        *others, last = sinks
        for sink in others:
            sink.flush()
        if position is None or checkpoint is None:
            last.flush()
            return
        if isinstance(checkpoint, Checkpoint):
            if last.flush_with(lambda handle: checkpoint.within(handle, position)):
                return
        else:
            last.flush()
        checkpoint(position)

    def _read_batch(
        self,
        flow: DataFlow,
        messages: Iterator[Message],
        size: int,
        tally: _Tally,
        dead: Sink | None,
    ) -> tuple[list[Message | Mapping[str, Any]], int, Any]:
        """Read and transform up to ``size`` messages, or fewer once ``batch_seconds`` pass.

        The clock is read between chunks of a few hundred messages, not per message.
        """
        out: list[Message | Mapping[str, Any]] = []
        limit = self.runtime.config.batch_seconds
        deadline = None if limit is None else time.monotonic() + limit
        count, position = 0, None
        while count < size:
            chunk = min(size - count, _CHUNK)
            read, last = self._transform(flow, messages, chunk, tally, dead, out)
            count += read
            if read:
                position = last
            if read < chunk or (deadline is not None and time.monotonic() >= deadline):
                break
        return out, count, position

    def _transform(
        self,
        flow: DataFlow,
        messages: Iterator[Message],
        size: int,
        tally: _Tally,
        dead: Sink | None,
        out: list[Message | Mapping[str, Any]],
    ) -> tuple[int, Any]:
        """Read up to ``size`` messages and transform them into ``out``.

        Messages are consumed one at a time (not materialised as a batch) so that each is
        freed as soon as it is transformed: fewer live objects, far less garbage-collector
        work on large runs.
        """
        append = out.append
        count = 0
        position = None
        if type(flow).transform is DataFlow.transform:
            for message in islice(messages, size):
                append(message)
                count += 1
                position = message.position
            return count, position
        transform = flow.transform
        for message in islice(messages, size):
            count += 1
            position = message.position
            try:
                result = transform(message)
                if result is None:
                    tally.skipped += 1
                elif type(result) is dict or isinstance(result, (Message, Mapping)):
                    append(result)
                else:
                    out.extend(_fan_out(result))
            except Exception as exc:
                self._on_error(flow, message, exc, tally, dead)
        return count, position

    def _on_error(
        self, flow: DataFlow, message: Message, exc: Exception, tally: _Tally, dead: Sink | None
    ) -> None:
        policy = flow.on_error
        if policy == "fail":
            raise exc
        tally.failed += 1
        log.warning(
            "flow %s: transform failed at position %r (%s: %s); %s",
            flow.name, message.position, type(exc).__name__, exc,
            "skipped" if policy == "skip" else "dead-lettered",
            extra={"action": f"transform_{policy}", "flow": flow.name},
        )
        if policy == "dead_letter" and dead is not None:
            dead.write(dead_letter(flow.name, message, exc))


    def _on_reject(
        self, flow: DataFlow, error: RecordRejected, tally: _Tally, dead: Sink | None
    ) -> None:
        """A sink refused one record; under skip/dead_letter the run goes on without it."""
        tally.failed += 1
        tally.written -= 1  # counted with its batch, but it was not stored
        log.warning(
            "flow %s: sink rejected record %r (%s); %s",
            flow.name, error.key, error,
            "skipped" if flow.on_error == "skip" else "dead-lettered",
            extra={"action": f"record_{flow.on_error}", "flow": flow.name},
        )
        if flow.on_error == "dead_letter" and dead is not None:
            message = error.record if isinstance(error.record, Message) else Untyped(
                as_record(error.record) if error.record is not None else {}
            )
            dead.write(dead_letter(flow.name, message, error))


def dead_letter(flow: str, message: Message, exc: BaseException) -> dict[str, Any]:
    """The record a dead-letter sink receives for a message whose transform failed."""
    return {
        "flow": flow,
        "position": message.position,
        "error_type": f"{type(exc).__module__}.{type(exc).__qualname__}",
        "error": str(exc),
        "message": message.to_dict(),
        "metadata": dict(message.metadata),
        "failed_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def _fan_out(result: Any) -> list[Message | Mapping[str, Any]]:
    # Materialise first: a generator that raises half-way must not write half its output.
    if isinstance(result, (str, bytes)) or not isinstance(result, Iterable):
        raise TypeError(
            f"transform returned {type(result).__name__}; expected a mapping, a Message, "
            "None, or an iterable of mappings/Messages"
        )
    items = list(result)
    for item in items:
        if not isinstance(item, (Message, Mapping)):
            raise TypeError(
                f"transform yielded {type(item).__name__}; fan-out items must be mappings "
                "or Messages"
            )
    return items


def _close_all(source: Source, sinks: list[Sink], ok: bool) -> None:
    """Close everything; after a failure, drop unflushed records instead of flushing them."""
    for sink in sinks:
        try:
            if not ok:
                sink.discard()
            sink.close()
        except Exception:
            if ok:
                raise
            log.exception("closing sink %r after a failed run", sink)
    try:
        source.close()
    except Exception:
        log.exception("closing source %r", source)


def call_hook(hook: Callable[[Any], None], arg: Any) -> None:
    """Call a flow hook (``after_success``/``after_failure``); its errors are logged only."""
    try:
        hook(arg)
    except Exception:
        log.exception("flow hook %s raised; ignored", getattr(hook, "__qualname__", hook))


