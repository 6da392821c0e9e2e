"""The flow form: HTML fields <-> a flow spec.

The form has a type (a ``<select>`` of registered types) and an options box (JSON) for the
source, the sink (or a JSON list when a flow has several sinks), the runtime and an optional
dead-letter sink; the schedule and batch size have fields of their own. Errors name the
field at fault so the page can show them next to it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["FlowForm", "FormError"]

INTERVAL_HELP = "seconds (e.g. 300) or a cron expression (e.g. */5 * * * *); empty: on demand"


class FormError(ValueError):
    """A field of the form is invalid."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(message)
        self.field = field_name


@dataclass
class FlowForm:
    """The values of the flow form, as strings (what the browser posts back)."""

    name: str = ""
    source_type: str = ""
    source_config: str = "{}"
    sink_type: str = ""
    sink_config: str = "{}"
    sinks_json: str = ""
    runtime_type: str = "heartbeat"
    runtime_config: str = "{}"
    interval: str = ""
    batch_size: str = ""
    on_error: str = "fail"
    dead_letter_type: str = ""
    dead_letter_config: str = "{}"
    errors: dict[str, str] = field(default_factory=dict)

    FIELDS = ("name", "source_type", "source_config", "sink_type", "sink_config",
              "sinks_json", "runtime_type", "runtime_config", "interval", "batch_size",
              "on_error", "dead_letter_type", "dead_letter_config")

    @classmethod
    def from_post(cls, data: Mapping[str, Any]) -> FlowForm:
        """The form as posted (missing fields keep their defaults)."""
        values: dict[str, Any] = {
            k: str(data[k]).strip() for k in cls.FIELDS if isinstance(data.get(k), str)}
        return cls(**values)

    @classmethod
    def from_flow(cls, flow: Mapping[str, Any]) -> FlowForm:
        """The form pre-filled from a (masked) flow view."""
        runtime_config = dict(flow["runtime"].get("config") or {})
        interval = runtime_config.pop("interval", None)
        sinks = flow["sinks"]
        dead = flow.get("dead_letter_sink")
        return cls(
            name=flow["name"],
            source_type=flow["source"]["type"], source_config=_dump(flow["source"]),
            sink_type=sinks[0]["type"] if len(sinks) == 1 else "",
            sink_config=_dump(sinks[0]) if len(sinks) == 1 else "{}",
            sinks_json=json.dumps(sinks, indent=2) if len(sinks) > 1 else "",
            runtime_type=flow["runtime"]["type"], runtime_config=json.dumps(runtime_config),
            interval="" if interval is None else str(interval),
            batch_size="" if flow.get("batch_size") is None else str(flow["batch_size"]),
            on_error=flow["on_error"],
            dead_letter_type=dead["type"] if dead else "",
            dead_letter_config=_dump(dead) if dead else "{}",
        )

    def to_spec(self, *, with_name: bool = True) -> dict[str, Any]:
        """The spec these values describe.

        Raises:
            FormError: a field is malformed (JSON, number), naming the field.
        """
        spec: dict[str, Any] = {}
        if with_name:
            spec["name"] = self.name
        spec["source"] = {"type": self.source_type,
                          "config": _json_object(self.source_config, "source_config")}
        if self.sinks_json:
            spec["sinks"] = _json_list(self.sinks_json, "sinks_json")
        else:
            spec["sink"] = {"type": self.sink_type,
                            "config": _json_object(self.sink_config, "sink_config")}
        runtime = _json_object(self.runtime_config, "runtime_config")
        if self.interval:
            runtime["interval"] = _interval(self.interval)
        spec["runtime"] = {"type": self.runtime_type or "heartbeat", "config": runtime}
        spec["on_error"] = self.on_error or "fail"
        if self.batch_size:
            spec["batch_size"] = _integer(self.batch_size, "batch_size")
        if self.dead_letter_type:
            spec["dead_letter_sink"] = {
                "type": self.dead_letter_type,
                "config": _json_object(self.dead_letter_config, "dead_letter_config")}
        return spec


def _dump(spec: Mapping[str, Any]) -> str:
    return json.dumps(spec.get("config") or {}, indent=2)


def _parse(text: str, field_name: str) -> Any:
    try:
        return json.loads(text or "null")
    except json.JSONDecodeError as exc:
        raise FormError(field_name, f"not valid JSON: {exc.msg} (line {exc.lineno}, column "
                        f"{exc.colno})") from None


def _json_object(text: str, field_name: str) -> dict[str, Any]:
    value = _parse(text or "{}", field_name)
    if not isinstance(value, dict):
        raise FormError(field_name, f"must be a JSON object like {{\"path\": \"x\"}}, got "
                        f"{type(value).__name__}")
    return value


def _json_list(text: str, field_name: str) -> list[Any]:
    value = _parse(text, field_name)
    if not isinstance(value, list) or not value:
        raise FormError(field_name, "must be a non-empty JSON list of "
                        '{"type": ..., "config": {...}} objects')
    return value


def _interval(text: str) -> float | str:
    try:
        value = float(text)
    except ValueError:
        return text  # a cron expression; the runtime validates it
    if value <= 0:
        raise FormError("interval", f"must be a positive number of seconds or a cron "
                        f"expression: {INTERVAL_HELP}")
    return int(value) if value.is_integer() else value


def _integer(text: str, field_name: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise FormError(field_name, f"must be a whole number, got {text!r}") from None
