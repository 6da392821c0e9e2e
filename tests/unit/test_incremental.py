"""Incremental runs: the cursor covers only flushed batches, so a failed run loses nothing."""

from __future__ import annotations

import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from active_data_flow import DataFlow, FlowRunError
from active_data_flow.connectors.jsonl import JsonLinesSink, JsonLinesSource
from active_data_flow.connectors.memory import MemorySink, MemorySource
from active_data_flow.runner import Checkpoint
from active_data_flow.runtimes.inline import Inline
from active_data_flow.testing import FaultySink


def run_until_done(flow: DataFlow, cursor: Any = None, limit: int = 100) -> tuple[Any, int]:
    """Run, resuming after each failure from the error's cursor; return (cursor, failures)."""
    failures = 0
    for _ in range(limit):
        try:
            return flow.run(cursor=cursor).cursor, failures
        except FlowRunError as exc:
            failures += 1
            cursor = exc.result.cursor if exc.result is not None else cursor
    raise AssertionError("flow never finished")


@settings(max_examples=60, deadline=None)
@given(
    total=st.integers(min_value=0, max_value=60),
    batch=st.integers(min_value=1, max_value=9),
    fail_on=st.lists(st.integers(min_value=1, max_value=12), max_size=4, unique=True),
)
def test_resuming_after_sink_failures_loses_nothing_and_duplicates_nothing(
    total: int, batch: int, fail_on: list[int]
) -> None:
    name = f"faulty-{uuid.uuid4().hex}"
    records = [{"id": i} for i in range(total)]
    flow_class = type("Copy", (DataFlow,), {
        "source": MemorySource(records=records),
        "sink": FaultySink(name=name, fail_on=fail_on),
        "runtime": Inline(batch_size=batch),
    })
    run_until_done(flow_class())
    stored = MemorySink.records_of(name)
    # A failed flush stores nothing, and the cursor never passed it: exactly once.
    assert [r["id"] for r in stored] == list(range(total))
    stored.clear()


def test_a_checkpoint_is_taken_only_after_the_sink_flushed() -> None:
    name = f"faulty-{uuid.uuid4().hex}"
    events: list[str] = []

    class Recording(FaultySink):
        def flush(self) -> None:
            had = bool(self._pending)
            super().flush()
            if had:
                events.append("flush")

    flow_class = type("Copy", (DataFlow,), {
        "source": MemorySource(records=[{"id": i} for i in range(5)]),
        "sink": Recording(name=name),
        "runtime": Inline(batch_size=2),
    })
    flow_class().run(checkpoint=lambda cursor: events.append(f"checkpoint {cursor}"))
    assert events == ["flush", "checkpoint 1", "flush", "checkpoint 3", "flush", "checkpoint 4"]


class Crash(Exception):
    pass


@settings(max_examples=25, deadline=None)
@given(
    total=st.integers(min_value=1, max_value=40),
    batch=st.integers(min_value=1, max_value=7),
    crash_at=st.lists(st.integers(min_value=0, max_value=45), max_size=3, unique=True),
)
def test_jsonl_to_jsonl_resume_duplicates_at_most_one_batch_per_failure(
    tmp_path_factory: pytest.TempPathFactory, total: int, batch: int, crash_at: list[int]
) -> None:
    """A sink that appends can re-write the batch in flight; never more, never less."""
    folder = tmp_path_factory.mktemp("resume")
    source_path, target_path = folder / "in.jsonl", folder / "out.jsonl"
    source_path.write_text("".join(f'{{"id": {i}}}\n' for i in range(total)))
    pending = set(crash_at)

    class CrashingSink(JsonLinesSink):
        """Flushes the first part of a batch, then crashes (a torn batch)."""

        def flush(self) -> None:
            ids = [int(line.split(":")[1].rstrip("}")) for line in self._lines]
            hit = sorted(pending.intersection(ids))
            if hit:
                pending.discard(hit[0])
                keep = ids.index(hit[0])
                self._lines = self._lines[:keep]
                super().flush()
                raise Crash(f"crash before writing id {hit[0]}")
            super().flush()

    flow_class = type("Copy", (DataFlow,), {
        "source": JsonLinesSource(path=source_path),
        "sink": CrashingSink(path=target_path),
        "runtime": Inline(batch_size=batch),
    })
    _, failures = run_until_done(flow_class())
    ids = [int(line.split(":")[1].rstrip("}")) for line in target_path.read_text().splitlines()]
    counts = Counter(ids)
    assert set(counts) == set(range(total))  # nothing lost
    duplicates = sum(c - 1 for c in counts.values())
    assert duplicates <= failures * (batch - 1)


def test_a_second_run_reads_only_new_lines(tmp_path: Path) -> None:
    source_path, target_path = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    source_path.write_text('{"id": 1}\n{"id": 2}\n')

    class Copy(DataFlow):
        source = JsonLinesSource(path=source_path)
        sink = JsonLinesSink(path=target_path)

    first = Copy().run()
    assert first.cursor == {"line": 2, "offset": 20}
    with source_path.open("a") as f:
        f.write('{"id": 3}\n')
    second = Copy().run(cursor=first.cursor)
    assert (second.read, second.cursor) == (1, {"line": 3, "offset": 30})
    assert target_path.read_text() == '{"id":1}\n{"id":2}\n{"id":3}\n'
    assert Copy().run(cursor=second.cursor).read == 0


def test_a_transactional_checkpoint_commits_inside_the_sinks_transaction() -> None:
    """Exactly-once hook: the cursor is saved through the sink's transaction handle."""
    events: list[str] = []

    class TransactionalSink(MemorySink):
        def flush_with(self, hook: Any) -> bool:
            events.append("begin")
            saved = hook("txn-handle")
            self.flush()
            events.append("commit")
            return saved

    class SameDatabase(Checkpoint):
        def __call__(self, cursor: Any) -> None:
            events.append(f"after commit {cursor}")

        def within(self, handle: Any, cursor: Any) -> bool:
            events.append(f"{handle} {cursor}")
            return cursor != 3  # pretend the last batch goes elsewhere

    flow_class = type("Copy", (DataFlow,), {
        "source": MemorySource(records=[{"id": i} for i in range(4)]),
        "sink": TransactionalSink(),
        "runtime": Inline(batch_size=2),
    })
    flow_class().run(checkpoint=SameDatabase())
    assert events == [
        "begin", "txn-handle 1", "commit",
        "begin", "txn-handle 3", "commit", "after commit 3",
    ]
