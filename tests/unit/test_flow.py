"""DataFlow: definition checks, transform return kinds, error policies, hooks."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from active_data_flow import DataFlow, FlowRunError, RunResult, Typed, Untyped
from active_data_flow.connectors.memory import MemorySink, MemorySource
from active_data_flow.errors import ConfigurationError
from active_data_flow.message import Message
from active_data_flow.runtimes.inline import Inline

RECORDS = [{"id": i, "n": i * 10} for i in range(10)]


def flow(transform: Any = None, **attrs: Any) -> DataFlow:
    """A flow over RECORDS into a fresh memory sink, with the given transform/attributes."""
    namespace: dict[str, Any] = {
        "source": MemorySource(records=RECORDS),
        "sink": MemorySink(),
        "runtime": Inline(batch_size=4),
        **attrs,
    }
    if transform is not None:
        namespace["transform"] = lambda self, m: transform(m)
    cls = type("TestFlow", (DataFlow,), namespace)
    return cls()


def written(f: DataFlow) -> list[dict[str, Any]]:
    sink = type(f).sink
    assert isinstance(sink, MemorySink)
    return sink.records


# -- definition ----------------------------------------------------------------------------
def test_name_defaults_to_snake_case() -> None:
    class CopyHTTPUsersFlow(DataFlow):
        source = MemorySource()
        sink = MemorySink()

    assert CopyHTTPUsersFlow.name == "copy_http_users_flow"


@pytest.mark.parametrize(
    ("attrs", "option"),
    [
        ({"source": None}, "source"),
        ({"sink": None}, "sink"),
        ({"sinks": [MemorySink()]}, "sinks"),
        ({"on_error": "ignore"}, "on_error"),
        ({"on_error": "dead_letter"}, "dead_letter_sink"),
        ({"batch_size": 0}, "batch_size"),
        ({"name": "has space"}, "name"),
        ({"source": "memory"}, "source"),
        ({"runtime": 5}, "runtime"),
        ({"source": {"type": "nope"}}, "type"),
        ({"sink": {"type": "jsonl", "config": {}}}, "path"),
    ],
)
def test_a_misdefined_flow_names_the_attribute(attrs: dict[str, Any], option: str) -> None:
    with pytest.raises(ConfigurationError) as err:
        flow(**attrs)
    assert err.value.option == option


def test_connectors_may_be_given_as_specs() -> None:
    sink_name = "spec-flow-out"
    f = flow(source={"type": "memory", "config": {"records": RECORDS}},
             sink={"type": "memory", "config": {"name": sink_name}})
    assert f.run().written == 10
    assert MemorySink.records_of(sink_name) == RECORDS
    MemorySink.records_of(sink_name).clear()


def test_every_run_builds_fresh_connectors() -> None:
    built: list[MemorySink] = []

    class Tracking(MemorySink):
        def _setup(self) -> None:
            super()._setup()
            built.append(self)

    template = Tracking()
    f = flow(sink=template)
    f.run()
    f.run()
    assert template not in built[1:]
    assert len({id(s) for s in built}) == len(built)
    assert len(template.records) == 20


def test_to_spec_describes_the_flow() -> None:
    f = flow(on_error="skip", sink=MemorySink(name="spec-out"))
    spec = type(f).flow_spec().to_dict()
    assert spec["name"] == "test_flow"
    assert spec["sinks"] == [{"type": "memory", "config": {"name": "spec-out"}}]
    assert spec["runtime"] == {"type": "inline", "config": {"batch_size": 4}}
    assert spec["on_error"] == "skip"


# -- transform return kinds -------------------------------------------------------------------
def test_identity_by_default() -> None:
    f = flow()
    result = f.run()
    assert written(f) == RECORDS
    assert (result.read, result.written, result.skipped, result.failed) == (10, 10, 0, 0)


def test_mapping_and_message_results_are_written() -> None:
    f = flow(lambda m: {"id": m["id"]} if m["id"] % 2 else Untyped({"id": -m["id"]}))
    f.run()
    assert [r["id"] for r in written(f)] == [0, 1, -2, 3, -4, 5, -6, 7, -8, 9]


def test_typed_results_are_written_as_their_data() -> None:
    f = flow(lambda m: Typed({"id": m["id"]}, schema={"id": int}))
    f.run()
    assert written(f) == [{"id": i} for i in range(10)]


def test_none_drops_the_message() -> None:
    f = flow(lambda m: None if m["id"] < 7 else m)
    result = f.run()
    assert [r["id"] for r in written(f)] == [7, 8, 9]
    assert (result.read, result.written, result.skipped) == (10, 3, 7)


def test_an_iterable_fans_out() -> None:
    def split(m: Message) -> Iterator[dict[str, Any]]:
        for k in range(m["id"] % 3):
            yield {"id": m["id"], "k": k}

    f = flow(split)
    result = f.run()
    assert result.written == sum(i % 3 for i in range(10))
    assert written(f)[:3] == [{"id": 1, "k": 0}, {"id": 2, "k": 0}, {"id": 2, "k": 1}]


def test_an_empty_iterable_writes_nothing() -> None:
    f = flow(lambda m: [])
    assert f.run().written == 0


@pytest.mark.parametrize("bad", [42, "text", [1, 2]])
def test_an_unsupported_return_value_fails_the_run_clearly(bad: Any) -> None:
    f = flow(lambda m: bad)
    with pytest.raises(FlowRunError, match=r"transform (returned|yielded) (int|str)"):
        f.run()


# -- error policies ------------------------------------------------------------------------
def boom_on_odd(m: Message) -> dict[str, Any]:
    if m["id"] % 2:
        raise ValueError(f"odd id {m['id']}")
    return {"id": m["id"]}


def test_fail_policy_stops_the_run_and_keeps_committed_batches() -> None:
    def boom_at_6(m: Message) -> Message:
        if m["id"] == 6:
            raise ValueError("six")
        return m

    f = flow(boom_at_6)
    with pytest.raises(FlowRunError, match="six") as err:
        f.run()
    assert isinstance(err.value.__cause__, ValueError)
    assert written(f) == RECORDS[:4]  # the first batch of 4 was committed; 4, 5 were not
    assert err.value.result is not None
    assert err.value.result.cursor == 3
    assert err.value.flow == "test_flow"


def test_skip_policy_counts_and_logs(caplog: pytest.LogCaptureFixture) -> None:
    f = flow(boom_on_odd, on_error="skip")
    result = f.run()
    assert [r["id"] for r in written(f)] == [0, 2, 4, 6, 8]
    assert (result.read, result.written, result.failed) == (10, 5, 5)
    # One warning per batch (batches of 4: 2 + 2 + 1 skipped), each message at debug level.
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        "flow test_flow: 2 message(s) skipped in batch 1 (first: transform failed at "
        "position 1: ValueError: odd id 1)",
        "flow test_flow: 2 message(s) skipped in batch 2 (first: transform failed at "
        "position 5: ValueError: odd id 5)",
        "flow test_flow: 1 message(s) skipped in batch 3 (first: transform failed at "
        "position 9: ValueError: odd id 9)",
    ]


def test_many_dead_letters_make_one_warning_per_batch(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="active_data_flow.runner")
    f = flow(boom_on_odd, on_error="dead_letter", dead_letter_sink=MemorySink(),
             runtime=Inline(batch_size=100))
    f.run()
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert [r.getMessage() for r in warnings] == [
        "flow test_flow: 5 message(s) dead-lettered in batch 1 (first: transform failed at "
        "position 1: ValueError: odd id 1)"]
    assert sum("odd id" in r.getMessage() for r in caplog.records
               if r.levelno == logging.DEBUG) == 5


def test_dead_letter_policy_writes_the_message_and_error() -> None:
    dead = MemorySink()
    f = flow(boom_on_odd, on_error="dead_letter", dead_letter_sink=dead)
    result = f.run()
    assert result.failed == 5
    assert len(dead.records) == 5
    letter = dead.records[0]
    assert letter["message"] == {"id": 1, "n": 10}
    assert letter["position"] == 1
    assert letter["error"] == "odd id 1"
    assert letter["error_type"] == "builtins.ValueError"
    assert letter["flow"] == "test_flow"


def test_a_fan_out_that_raises_midway_writes_none_of_its_items() -> None:
    def half(m: Message) -> Iterator[dict[str, Any]]:
        yield {"id": m["id"], "part": 1}
        if m["id"] == 2:
            raise RuntimeError("half way")
        yield {"id": m["id"], "part": 2}

    f = flow(half, on_error="skip")
    f.run()
    assert [r for r in written(f) if r["id"] == 2] == []


# -- hooks and control ------------------------------------------------------------------------
def test_after_success_and_after_failure_hooks() -> None:
    seen: list[Any] = []
    ok = flow(after_success=lambda self, r: seen.append(r))
    result = ok.run()
    assert seen == [result]

    failing = flow(boom_on_odd, after_failure=lambda self, e: seen.append(e))
    with pytest.raises(FlowRunError) as err:
        failing.run()
    assert seen[-1] is err.value


def test_a_hook_that_raises_does_not_change_the_outcome(caplog: pytest.LogCaptureFixture) -> None:
    def bad_hook(self: DataFlow, result: RunResult) -> None:
        raise RuntimeError("hook broke")

    assert flow(after_success=bad_hook).run().written == 10
    assert "hook broke" in caplog.text


def test_stop_interrupts_after_the_current_batch() -> None:
    stop = threading.Event()

    def stop_at_5(m: Message) -> Message:
        if m["id"] == 5:
            stop.set()
        return m

    f = flow(stop_at_5)
    result = f.run(stop=stop)
    assert result.interrupted
    assert result.cursor == 7  # the batch holding id 5 (4..7) completed
    assert written(f) == RECORDS[:8]
    f.run(cursor=result.cursor)
    assert written(f) == RECORDS


def test_progress_and_checkpoint_callbacks_follow_batches() -> None:
    progress: list[int] = []
    checkpoints: list[Any] = []
    flow().run(on_progress=lambda r: progress.append(r.read), checkpoint=checkpoints.append)
    assert progress == [4, 8, 10]
    assert checkpoints == [3, 7, 9]


def test_flow_batch_size_overrides_the_runtime() -> None:
    checkpoints: list[Any] = []
    flow(batch_size=5).run(checkpoint=checkpoints.append)
    assert checkpoints == [4, 9]


def test_a_slow_batch_ends_after_batch_seconds() -> None:
    """A batch ends once batch_seconds have passed, even short of batch_size."""
    import time as clock

    def slow(m: Message) -> Message:
        clock.sleep(0.0005)
        return m

    records = [{"id": i} for i in range(2000)]
    checkpoints: list[Any] = []
    fast = flow(slow, source=MemorySource(records=records),
                runtime=Inline(batch_size=2000, batch_seconds=0.05))
    result = fast.run(checkpoint=checkpoints.append)
    assert result.read == 2000
    assert len(checkpoints) > 1  # ended early, at chunk boundaries
    assert all((c + 1) % 500 == 0 for c in checkpoints)
    unbounded = flow(slow, source=MemorySource(records=records),
                     runtime=Inline(batch_size=2000, batch_seconds=None))
    checkpoints.clear()
    unbounded.run(checkpoint=checkpoints.append)
    assert checkpoints == [1999]


def test_caused_by_walks_causes_and_contexts() -> None:
    from active_data_flow.errors import RunClaimLost, caused_by

    def fail() -> None:
        try:
            raise RunClaimLost("taken over")
        except RunClaimLost as inner:
            raise FlowRunError("run failed") from inner

    with pytest.raises(FlowRunError) as outer:
        fail()
    assert caused_by(outer.value, RunClaimLost)
    assert not caused_by(outer.value, KeyError)
    assert not caused_by(None, KeyError)
