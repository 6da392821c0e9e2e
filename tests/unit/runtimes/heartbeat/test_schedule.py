"""When flows are due: intervals keep their cadence, cron expressions follow the wall clock of
their timezone across daylight saving changes, and bad schedules are refused."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from active_data_flow.errors import ConfigurationError
from active_data_flow.runtimes.heartbeat import Heartbeat
from active_data_flow.runtimes.heartbeat.schedule import Schedule, schedule_of

T0 = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
PARIS = ZoneInfo("Europe/Paris")


def fires(schedule: Schedule, start: datetime, count: int) -> list[datetime]:
    out, due = [], start
    for _ in range(count):
        due = schedule.next_due(due, due)
        out.append(due)
    return out


def test_an_interval_keeps_its_anchor_when_a_run_ends_late() -> None:
    every_minute = Schedule(seconds=60)
    assert every_minute.first_due(T0) == T0
    assert every_minute.next_due(T0, T0 + timedelta(seconds=5)) == T0 + timedelta(seconds=60)
    # A run that overran three slots: the next slot after now, not a burst of catch-ups.
    late = every_minute.next_due(T0, T0 + timedelta(seconds=185))
    assert late == T0 + timedelta(seconds=240)


@given(seconds=st.integers(1, 100_000), elapsed=st.floats(0, 1_000_000))
def test_the_next_interval_slot_is_after_now_and_on_the_grid(seconds: int, elapsed: float) -> None:
    now = T0 + timedelta(seconds=elapsed)
    due = Schedule(seconds=seconds).next_due(T0, now)
    assert due > now
    assert due - now <= timedelta(seconds=seconds)
    assert (due - T0).total_seconds() % seconds == pytest.approx(0, abs=1e-3)


def test_a_daily_cron_runs_once_a_day_across_both_daylight_saving_changes() -> None:
    daily = Schedule(cron="30 2 * * *", timezone="Europe/Paris")
    spring = fires(daily, datetime(2025, 3, 28, 12, tzinfo=UTC), 4)
    autumn = fires(daily, datetime(2025, 10, 24, 12, tzinfo=UTC), 4)
    for times in (spring, autumn):
        local_days = [t.astimezone(PARIS).date() for t in times]
        assert len(set(local_days)) == 4  # one run per local day, none twice
        assert all(b - a >= timedelta(hours=23) for a, b in itertools.pairwise(times))
    # 02:30 does not exist on 30 March: it runs right after the clocks jump.
    assert spring[1].astimezone(PARIS).replace(tzinfo=None) == datetime(2025, 3, 30, 3, 0)
    # 02:30 happens twice on 26 October: it runs at the first one only.
    assert autumn[1] == datetime(2025, 10, 26, 0, 30, tzinfo=UTC)


def test_a_frequent_cron_keeps_its_real_time_spacing_when_clocks_go_back() -> None:
    half_hourly = Schedule(cron="*/30 * * * *", timezone="Europe/Paris")
    times = fires(half_hourly, datetime(2025, 10, 25, 23, 50, tzinfo=UTC), 6)
    gaps = {b - a for a, b in itertools.pairwise(times)}
    assert gaps == {timedelta(minutes=30)}


@given(start=st.datetimes(min_value=datetime(2024, 1, 1), max_value=datetime(2027, 1, 1),
                          timezones=st.just(UTC)),
       expr=st.sampled_from(["0 2 * * *", "*/15 * * * *", "30 1 * * 0", "0 */3 * * *"]),
       zone=st.sampled_from(["UTC", "Europe/Paris", "America/New_York", "Australia/Sydney"]))
def test_cron_slots_strictly_increase_and_match_the_wall_clock(
    start: datetime, expr: str, zone: str
) -> None:
    schedule = Schedule(cron=expr, timezone=zone)
    times = fires(schedule, start, 5)
    assert all(a < b for a, b in zip([start, *times], times, strict=False))
    minute = expr.split()[0]
    for t in times:
        local = t.astimezone(ZoneInfo(zone))
        assert local.second == 0
        if minute.isdigit():
            assert local.minute == int(minute)
        else:
            assert local.minute % 15 == 0


def test_runtime_specs_give_their_schedules() -> None:
    assert schedule_of(Heartbeat(interval=90).to_dict()) == Schedule(seconds=90)
    assert schedule_of(Heartbeat(interval="0 2 * * *", timezone="Asia/Tokyo").to_dict()) == \
        Schedule(cron="0 2 * * *", timezone="Asia/Tokyo")
    assert schedule_of(Heartbeat().to_dict()) is None  # on demand
    assert schedule_of(Heartbeat(interval=5, enabled=False).to_dict()) is None
    assert Schedule(seconds=90).describe() == "every 90s"
    assert Schedule(cron="0 2 * * *", timezone="Asia/Tokyo").describe() == \
        "cron 0 2 * * * (Asia/Tokyo)"


@pytest.mark.parametrize(("config", "option"), [
    ({"interval": "61 * * * *"}, "interval"),
    ({"interval": -5}, "interval"),
    ({"timezone": "Nowhere/Special"}, "timezone"),
    ({"max_attempts": 0}, "max_attempts"),
    ({"backoff": -1}, "backoff"),
])
def test_bad_heartbeat_options_are_refused_naming_the_option(
    config: dict[str, object], option: str
) -> None:
    def build() -> object:
        return schedule_of(Heartbeat(**config).to_dict())

    with pytest.raises(ConfigurationError) as caught:
        build()
    assert caught.value.option == option


@pytest.mark.parametrize(("alias", "fields"), [
    ("@yearly", "0 0 1 1 *"), ("@annually", "0 0 1 1 *"), ("@monthly", "0 0 1 * *"),
    ("@weekly", "0 0 * * 0"), ("@daily", "0 0 * * *"), ("@midnight", "0 0 * * *"),
    ("@hourly", "0 * * * *"), ("@Daily", "0 0 * * *"),
])
def test_cron_shorthands_are_stored_as_their_fields(alias: str, fields: str) -> None:
    runtime = Heartbeat(interval=alias)
    assert runtime.to_dict()["config"]["interval"] == fields
    raw = schedule_of({"type": "heartbeat", "config": {"interval": alias}})  # a stored spec
    assert raw is not None
    assert raw.cron == fields


def test_a_daily_shorthand_runs_at_midnight() -> None:
    schedule = schedule_of(Heartbeat(interval="@daily").to_dict())
    assert schedule is not None
    assert schedule.first_due(datetime(2026, 3, 1, 15, 0, tzinfo=UTC)) == datetime(
        2026, 3, 2, tzinfo=UTC)


def test_a_malformed_cron_says_how_many_fields_are_expected() -> None:
    with pytest.raises(ConfigurationError, match="five or six fields") as caught:
        Heartbeat(interval="@dayly")
    assert "@daily" in str(caught.value)
    assert caught.value.option == "interval"
