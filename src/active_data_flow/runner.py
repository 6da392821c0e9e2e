"""The read-transform-write loop every runtime shares, and what one run did.

:class:`Runner` reads a flow's source in batches; for each batch it applies the transform,
writes the results to every sink, flushes them, and only then checkpoints the batch's end
position. A crash therefore re-reads at most the batch in flight, and a cursor never covers
unwritten data. Runtimes differ in what they wrap around this loop (recording runs, leases,
retries), never in the loop itself.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass
from itertools import islice
from typing import TYPE_CHECKING, Any

from active_data_flow.columnar import ArrowBatch, as_table, concat
from active_data_flow.connector import Sink, Source
from active_data_flow.errors import FlowRunError, RecordRejected, error_type
from active_data_flow.message import Message, Untyped, as_record, record_key

if TYPE_CHECKING:
    from active_data_flow.flow import DataFlow, FlowSpec
    from active_data_flow.runtime import Runtime

__all__ = ["Checkpoint", "RunResult", "Runner", "call_hook", "dead_letter"]

log = logging.getLogger(__name__)

#: Messages read between two looks at the clock (see ``RuntimeConfig.batch_seconds``).
_CHUNK = 500


@dataclass(frozen=True, slots=True)
class RunResult:
    """What one run of a flow did.

    Attributes:
        flow: the flow's name.
        read: messages read from the source (in a failed run: up to the failing one).
        written: records handed to the sinks and flushed (counted once, however many sinks).
        skipped: messages the transform dropped by returning ``None``.
        failed: messages whose transform raised and were skipped or dead-lettered.
        duration_s: wall time of the run, in seconds.
        cursor: the last checkpointed position; pass it as ``run(cursor=...)`` to resume.
        batches: batches committed.
        interrupted: the run stopped early on request (graceful shutdown); resume it later.
        total: how many messages the source said it holds, when it can tell cheaply.
        uncommitted: of ``read``, the messages of a batch that failed before it was written
            (a retry reads them again).
    """

    flow: str
    read: int = 0
    written: int = 0
    skipped: int = 0
    failed: int = 0
    duration_s: float = 0.0
    cursor: Any = None
    batches: int = 0
    interrupted: bool = False
    total: int | None = None
    uncommitted: int = 0

    @property
    def rate(self) -> float:
        """Messages read per second."""
        return self.read / self.duration_s if self.duration_s > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        """The result as a JSON-safe dict (the cursor is JSON-safe by contract)."""
        return asdict(self)


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

    #: Set by the runner before each batch commits: the run's totals once that batch is
    #: committed (sink rejections included), so that a checkpoint can save them with the
    #: cursor and they stay exact whatever happens to the process next.
    totals: Callable[[], RunResult] | None = None

    def within(self, handle: Any, cursor: Any) -> bool:
        """Save ``cursor`` through the sink's transaction ``handle`` if it can; say whether."""
        return False

    def check(self) -> None:
        """Called before each batch is written; raise to refuse the write (a runtime whose
        claim on the run was lost must not write another batch)."""


class _Tally:
    """Running counts of one run (mutable; frozen into a RunResult on demand)."""

    __slots__ = ("batch_failed", "batches", "cursor", "failed", "first_failure", "in_flight",
                 "read", "skipped", "started", "total", "written")

    def __init__(self, cursor: Any) -> None:
        self.read = self.written = self.skipped = self.failed = self.batches = 0
        self.batch_failed = 0  # skipped/dead-lettered in the batch being built
        self.first_failure = ""
        self.in_flight = 0  # read in the batch being built, not yet committed
        self.cursor = cursor
        self.total: int | None = None
        self.started = time.perf_counter()

    def result(self, flow: str, interrupted: bool = False) -> RunResult:
        return RunResult(
            flow=flow, read=self.read + self.in_flight, written=self.written,
            skipped=self.skipped, failed=self.failed,
            duration_s=time.perf_counter() - self.started, cursor=self.cursor,
            batches=self.batches, interrupted=interrupted, total=self.total,
            uncommitted=self.in_flight,
        )

    def note_failure(self, what: str) -> None:
        """Count one message skipped or dead-lettered (summarised once per batch)."""
        self.failed += 1
        self.batch_failed += 1
        if self.batch_failed == 1:
            self.first_failure = what

    def after(self, flow: str, read: int, written: int, position: Any) -> RunResult:
        """The totals once the batch being committed (``read`` messages, ``written``
        records) is: ``written`` already lost the records the sinks rejected."""
        return RunResult(
            flow=flow, read=self.read + read, written=self.written + written,
            skipped=self.skipped, failed=self.failed,
            duration_s=time.perf_counter() - self.started,
            cursor=position if position is not None else self.cursor,
            batches=self.batches + 1, total=self.total,
        )


class _Failed(Exception):
    """A transform error under the ``fail`` policy, with the message it failed on (for a
    batch transform: the first failing row, and ``detail`` naming all of them)."""

    def __init__(self, cause: Exception, message: Message, index: int, detail: str = "") -> None:
        super().__init__(str(cause))
        self.cause, self.message, self.index, self.detail = cause, message, index, detail


class Runner:
    """Runs a flow: the read-transform-write loop with per-batch checkpoints.

    Args:
        runtime: the runtime whose options (batch size, batch seconds) apply.
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
        count: bool = False,
    ) -> RunResult:
        """Run ``flow`` to the end of its source (see :meth:`DataFlow.run`).

        ``hooks=False`` skips ``after_success``/``after_failure``: a runtime that retries or
        records runs calls them itself, once per run, after recording the outcome.
        ``count=True`` asks the source first how many messages it holds (``total`` in the
        results; progress bars use it); it may cost a query.
        """
        name = flow.spec.name
        tally = _Tally(cursor)
        try:
            interrupted = self._loop(flow, tally, checkpoint, on_progress, stop, count)
        except Exception as exc:
            error = _run_error(name, tally, exc)
            if hooks:
                call_hook(flow.after_failure, error)
            raise error from (exc.cause if isinstance(exc, _Failed) else exc)
        result = tally.result(name, interrupted)
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
        count: bool,
    ) -> bool:
        spec = flow.spec
        source = spec.build_source()
        sinks = spec.build_sinks()
        dead = spec.build_dead_letter_sink()
        all_sinks = [*sinks, dead] if dead is not None else sinks
        size = spec.batch_size or self.runtime.batch_size
        if spec.on_error != "fail":
            for sink in sinks:
                sink.on_reject = lambda err: self._on_reject(flow, err, tally, dead)
        ok = False
        try:
            if count and tally.cursor is None:
                tally.total = source.count()
            next_batch = self._reader(flow, source, size, tally, dead)
            while True:
                out, n, position = next_batch()
                if not n:
                    break
                if isinstance(checkpoint, Checkpoint):
                    checkpoint.check()
                    checkpoint.totals = functools.partial(
                        tally.after, spec.name, n, len(out), position)
                if len(out):
                    for sink in sinks:
                        if flow.batches:
                            sink.write_table(out)
                        else:
                            sink.write_batch(out)
                self._commit(sinks, dead, position, checkpoint)
                _log_failures(spec, tally)
                if position is not None:
                    source.committed(position)
                # The batch is durable and the cursor saved; only now does the tally move.
                tally.read += n
                tally.in_flight = 0
                tally.written += len(out)
                tally.batches += 1
                if position is not None:
                    tally.cursor = position
                if on_progress is not None:
                    on_progress(tally.result(spec.name))
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

    def _reader(
        self, flow: DataFlow, source: Source, size: int, tally: _Tally, dead: Sink | None,
    ) -> Callable[[], tuple[Any, int, Any]]:
        """The function giving the next batch: ``(records or table, messages read, position)``.

        Row path: messages transformed one by one into a list. Columnar path (the flow
        defines ``transform_batch``): the source's Arrow batches, transformed whole.
        """
        if flow.batches:
            batches = source.read_batches(tally.cursor, size)
            return lambda: self._columnar_batch(flow, batches, tally, dead)
        messages = source.read(tally.cursor)
        return lambda: self._read_batch(flow, messages, size, tally, dead)

    def _columnar_batch(
        self, flow: DataFlow, batches: Iterator[ArrowBatch], tally: _Tally, dead: Sink | None,
    ) -> tuple[Any, int, Any]:
        batch = next(batches, None)
        while batch is not None and not len(batch):
            batch = next(batches, None)
        if batch is None:
            return [], 0, None
        n = len(batch)
        tally.in_flight += n
        try:
            out = as_table(flow.transform_batch(batch.table))
        except Exception as exc:
            out = self._isolate_rows(flow, batch, exc, tally, dead)
        return out, n, batch.position

    def _isolate_rows(
        self, flow: DataFlow, batch: ArrowBatch, exc: Exception, tally: _Tally,
        dead: Sink | None,
    ) -> Any:
        """A batch transform raised: transform each row alone (one-row slices) to find the
        rows at fault. Under ``fail`` the run fails naming them; else they are skipped or
        dead-lettered and the others' results kept."""
        table = batch.table
        parts: list[Any] = []
        failing: list[tuple[int, Exception]] = []
        for i in range(table.num_rows):
            try:
                parts.append(as_table(flow.transform_batch(table.slice(i, 1))))
            except Exception as row_exc:
                failing.append((i, row_exc))
        if not failing:  # no row fails alone: the batch as a whole is at fault
            raise exc
        start = tally.read + tally.in_flight - table.num_rows
        at = batch.position_at

        def message(i: int) -> Message:
            return Untyped(table.slice(i, 1).to_pylist()[0],
                           position=at(i) if at is not None else None)

        if flow.spec.on_error == "fail":
            shown = ", ".join(
                f"message {start + i + 1}" + (f" at position {at(i)!r}" if at is not None
                                              else "")
                for i, _ in failing[:10])
            more = f" and {len(failing) - 10} more" if len(failing) > 10 else ""
            i, first = failing[0]
            raise _Failed(first, message(i), start + i + 1,
                          f" (the batch's failing rows: {shown}{more})") from first
        for i, error in failing:
            self._on_error(flow, message(i), error, tally, dead, 0)
        return concat(parts)

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
        if not flow.transforms:
            for message in islice(messages, size):
                append(message)
                count += 1
                position = message.position
            tally.in_flight += count
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
                self._on_error(flow, message, exc, tally, dead, count)
        tally.in_flight += count
        return count, position

    def _on_error(
        self, flow: DataFlow, message: Message, exc: Exception, tally: _Tally,
        dead: Sink | None, count: int,
    ) -> None:
        policy = flow.spec.on_error
        if policy == "fail":
            tally.in_flight += count
            raise _Failed(exc, message, tally.read + tally.in_flight) from exc
        what = f"transform failed at position {message.position!r}: {type(exc).__name__}: {exc}"
        tally.note_failure(what)
        log.debug("flow %s: %s", flow.spec.name, what,
                  extra={"action": f"transform_{policy}", "flow": flow.spec.name})
        if policy == "dead_letter" and dead is not None:
            dead.write(dead_letter(flow.spec.name, message, exc))

    def _on_reject(
        self, flow: DataFlow, error: RecordRejected, tally: _Tally, dead: Sink | None
    ) -> None:
        """A sink refused one record; under skip/dead_letter the run goes on without it."""
        policy = flow.spec.on_error
        tally.written -= 1  # counted with its batch, but it was not stored
        what = f"sink rejected record {error.key!r}: {error}"
        tally.note_failure(what)
        log.debug("flow %s: %s", flow.spec.name, what,
                  extra={"action": f"record_{policy}", "flow": flow.spec.name})
        if policy == "dead_letter" and dead is not None:
            message = error.record if isinstance(error.record, Message) else Untyped(
                as_record(error.record) if error.record is not None else {}
            )
            dead.write(dead_letter(flow.spec.name, message, error))


def _log_failures(spec: FlowSpec, tally: _Tally) -> None:
    """One warning per committed batch that skipped or dead-lettered messages (each one is
    logged at debug level)."""
    if not tally.batch_failed:
        return
    log.warning(
        "flow %s: %d message(s) %s in batch %d (first: %s)", spec.name, tally.batch_failed,
        "skipped" if spec.on_error == "skip" else "dead-lettered", tally.batches + 1,
        tally.first_failure,
        extra={"action": f"batch_{spec.on_error}", "flow": spec.name},
    )
    tally.batch_failed = 0


def _run_error(name: str, tally: _Tally, exc: Exception) -> FlowRunError:
    """The FlowRunError of a failed run: what failed, where, and where to resume."""
    result = tally.result(name)
    cause = exc.cause if isinstance(exc, _Failed) else exc
    where = ""
    if isinstance(exc, _Failed):
        details = [f"{k} {v!r}" for k, v in (("position", exc.message.position),
                                             ("key", record_key(exc.message)))
                   if v is not None]
        where = f" at message {exc.index}"
        if details and not exc.detail:
            where += f" ({', '.join(details)})"
        where += exc.detail
    resume = ("resume from the start" if result.cursor is None
              else f"resume after cursor {result.cursor!r}")
    error = FlowRunError(
        f"{type(cause).__name__}: {cause} (flow {name!r} failed{where} after reading "
        f"{result.read} message(s) and writing {result.written}; {resume})",
        flow=name,
        result=result,
    )
    error.__cause__ = cause
    return error


def dead_letter(flow: str, message: Message, exc: BaseException) -> dict[str, Any]:
    """The record a dead-letter sink receives for a message whose transform failed."""
    return {
        "flow": flow,
        "position": message.position,
        "error_type": error_type(exc),
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
