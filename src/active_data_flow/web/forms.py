"""The flow form: HTML fields <-> a flow spec, derived from :class:`~active_data_flow.FlowSpec`.

Every field of the spec becomes inputs by its type, so a new flow option appears in the form
by itself: a connector or runtime is a ``<select>`` of registered types (``<prefix>_type``)
and an options box (JSON, ``<prefix>_config``); several sinks are a JSON list
(``sinks_json``); a choice is a ``<select>``; a number a number box; a list of names a
comma-separated text. The runtime's ``interval`` has a box of its own. Errors name the input
at fault so the page shows them next to it.
"""

from __future__ import annotations

import json
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from active_data_flow.flow import ComponentSpec, FlowSpec

__all__ = ["FIELDS", "INTERVAL_HELP", "FlowForm", "FormError", "FormField"]

INTERVAL_HELP = "seconds (e.g. 300) or a cron expression (e.g. */5 * * * *); empty: on demand"

Kind = Literal["text", "component", "components", "choice", "number", "names"]


class FormError(ValueError):
    """A field of the form is invalid."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(message)
        self.field = field_name


@dataclass(frozen=True, slots=True)
class FormField:
    """One field of the spec as the form shows it.

    Attributes:
        name: the spec's field.
        kind: how it is edited (see the module docstring).
        label: what the page says (the field's description).
        prefix: the inputs' names start with it (``source`` -> ``source_type``...).
        required: the form refuses to save without it.
        choices: the options of a ``choice``.
        role: for a connector: ``source``, ``sink`` or ``runtime`` (which types to offer).
    """

    name: str
    kind: Kind
    label: str
    prefix: str
    required: bool = False
    choices: tuple[str, ...] = ()
    role: str = ""

    @property
    def inputs(self) -> tuple[str, ...]:
        """The names of its HTML inputs."""
        if self.kind == "component":
            extra = ("interval",) if self.name == "runtime" else ()
            return (f"{self.prefix}_type", f"{self.prefix}_config", *extra)
        if self.kind == "components":
            return (f"{self.prefix}_json",)
        return (self.prefix,)


def _kind(annotation: Any) -> tuple[Kind, tuple[str, ...], bool]:
    """``(kind, choices, optional)`` for a spec field's annotation."""
    args = typing.get_args(annotation)
    optional = type(None) in args
    if optional:
        annotation = next(a for a in args if a is not type(None))
        args = typing.get_args(annotation)
    origin = typing.get_origin(annotation)
    if annotation is ComponentSpec:
        return "component", (), optional
    if origin is tuple and args and args[0] is ComponentSpec:
        return "components", (), optional
    if origin is Literal:
        return "choice", tuple(str(a) for a in args), optional
    if origin is tuple:
        return "names", (), optional
    if annotation is int:
        return "number", (), optional
    return "text", (), optional


def _role(name: str) -> str:
    return "source" if name == "source" else "runtime" if name == "runtime" else "sink"


def _fields() -> tuple[FormField, ...]:
    found = []
    for name, info in FlowSpec.model_fields.items():
        kind, choices, _optional = _kind(info.annotation)
        prefix = name.removesuffix("_sink") if name != "sink" else name
        # The sinks are required, edited as one sink (``sink``) or as a JSON list.
        required = name == "sink" or (info.is_required() and kind != "components")
        found.append(FormField(
            name=name, kind=kind, label=info.description or name.replace("_", " "),
            prefix=prefix, required=required, choices=choices,
            role=_role(name) if kind.startswith("component") else ""))
    return tuple(found)


#: The form's fields, in the spec's order.
FIELDS = _fields()


@dataclass
class FlowForm:
    """The values of the flow form, as strings (what the browser posts back).

    Attributes:
        values: input name -> text.
        errors: input name (or ``"general"``) -> why it is refused.
    """

    values: dict[str, str] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)

    fields = FIELDS

    def __getattr__(self, name: str) -> str:
        # Templates read inputs as attributes (form.source_type): every input has a value.
        if name.startswith("_"):
            raise AttributeError(name)
        return self.values.get(name, _DEFAULTS.get(name, ""))

    @property
    def name(self) -> str:
        """The flow's name."""
        return self.values.get("name", "")

    @name.setter
    def name(self, value: str) -> None:
        self.values["name"] = value

    @classmethod
    def from_post(cls, data: Mapping[str, Any]) -> FlowForm:
        """The form as posted (missing inputs keep their defaults)."""
        names = {i for f in FIELDS for i in f.inputs}
        return cls({k: str(v).strip() for k, v in data.items()
                    if k in names and isinstance(v, str)})

    @classmethod
    def from_flow(cls, flow: Mapping[str, Any]) -> FlowForm:
        """The form pre-filled from a (masked) flow view."""
        values: dict[str, str] = {}
        for f in FIELDS:
            values.update(_render(f, flow))
        return cls(values)

    def to_spec(self, *, with_name: bool = True) -> dict[str, Any]:
        """The spec these values describe.

        Raises:
            FormError: an input is malformed (JSON, number), naming the input.
        """
        spec: dict[str, Any] = {}
        several = bool(self.values.get("sinks_json"))
        for f in FIELDS:
            if (f.name == "name" and not with_name) or (f.name == "sink" and several) or (
                    f.name == "sinks" and not several):
                continue
            value = _parse(f, self)
            if value is not None:
                spec[f.name] = value
        return spec


_DEFAULTS = {"source_config": "{}", "sink_config": "{}", "runtime_type": "heartbeat",
             "runtime_config": "{}", "on_error": "fail", "dead_letter_config": "{}"}


def _render(f: FormField, flow: Mapping[str, Any]) -> dict[str, str]:
    value = flow.get(f.name)
    if f.kind == "component":
        if f.name == "sink":  # one sink: edit it in place; several: as a JSON list
            sinks = flow.get("sinks") or []
            value = sinks[0] if len(sinks) == 1 else None
        if not value:
            return {}
        config = dict(value.get("config") or {})
        out = {f"{f.prefix}_type": str(value.get("type", ""))}
        if f.name == "runtime":
            interval = config.pop("interval", None)
            out["interval"] = "" if interval is None else str(interval)
        out[f"{f.prefix}_config"] = json.dumps(config, indent=2 if f.name != "runtime" else None)
        return out
    if f.kind == "components":
        return {f"{f.prefix}_json": json.dumps(value, indent=2)} if value and len(value) > 1 \
            else {}
    if f.kind == "names":
        return {f.prefix: ", ".join(value or [])}
    return {f.prefix: "" if value is None else str(value)}


def _parse(f: FormField, form: FlowForm) -> Any:
    if f.kind == "component":
        return _component(f, form)
    if f.kind == "components":
        return _json_list(form.values.get(f"{f.prefix}_json", ""), f"{f.prefix}_json")
    text = form.values.get(f.prefix, _DEFAULTS.get(f.prefix, ""))
    if not text:
        return None
    if f.kind == "number":
        try:
            return int(text)
        except ValueError:
            raise FormError(f.prefix, f"must be a whole number, got {text!r}") from None
    if f.kind == "names":
        return [n.strip() for n in text.split(",") if n.strip()]
    return text


def _component(f: FormField, form: FlowForm) -> dict[str, Any] | None:
    kind = form.values.get(f"{f.prefix}_type", _DEFAULTS.get(f"{f.prefix}_type", ""))
    config = _json_object(form.values.get(f"{f.prefix}_config", "{}"), f"{f.prefix}_config")
    if f.name == "runtime":
        interval = form.values.get("interval", "")
        if interval:
            config["interval"] = _interval(interval)
        kind = kind or "heartbeat"
    if not kind:
        return None if not f.required else {"type": "", "config": config}
    return {"type": kind, "config": config}


def _json(text: str, field_name: str) -> Any:
    try:
        return json.loads(text or "null")
    except json.JSONDecodeError as exc:
        raise FormError(field_name, f"not valid JSON: {exc.msg} (line {exc.lineno}, column "
                        f"{exc.colno})") from None


def _json_object(text: str, field_name: str) -> dict[str, Any]:
    value = _json(text or "{}", field_name)
    if not isinstance(value, dict):
        raise FormError(field_name, f"must be a JSON object like {{\"path\": \"x\"}}, got "
                        f"{type(value).__name__}")
    return value


def _json_list(text: str, field_name: str) -> list[Any]:
    value = _json(text, field_name)
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
