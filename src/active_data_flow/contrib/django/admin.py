"""Flows, runs and dead letters in the Django admin.

Read-only lists (filters, search, a flow's recent runs inline) and actions that go through
the flow store (so claims, leases and fencing stay intact): **Run now** (queues a run for the
worker or heartbeat), **Pause**, **Resume**, **Reset cursor** on flows; **Replay** on dead
letters. Each action needs its permission (superusers have them all):
``active_data_flow.run_flow``, ``pause_flow``, ``reset_cursor``, ``replay_deadletter``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from active_data_flow.contrib.django import conf
from active_data_flow.contrib.django.models import DeadLetter, Flow, Run
from active_data_flow.errors import ActiveDataFlowError

_PERMS = {"run": "run_flow", "pause": "pause_flow", "reset": "reset_cursor",
          "replay": "replay_deadletter"}


class _ReadOnly(admin.ModelAdmin):
    """Lists and details only: rows change through the store (actions, ``manage.py adf``)."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


def _perm(name: str) -> Callable[[Any, HttpRequest], bool]:
    def check(self: Any, request: HttpRequest) -> bool:
        return bool(request.user.has_perm(f"active_data_flow.{_PERMS[name]}"))

    return check


def _each(modeladmin: admin.ModelAdmin, request: HttpRequest,
          names: list[str], verb: str, act: Callable[[Any, str], Any]) -> None:
    """Apply ``act(store, name)`` to each flow, reporting successes and failures."""
    done, failed = [], []
    with conf.flow_store() as store:
        for name in names:
            try:
                act(store, name)
                done.append(name)
            except ActiveDataFlowError as exc:
                failed.append(f"{name}: {exc}")
    if done:
        modeladmin.message_user(request, f"{verb}: {', '.join(done)}", messages.SUCCESS)
    for line in failed:
        modeladmin.message_user(request, line, messages.ERROR)


class RunInline(admin.TabularInline):
    model = Run
    fields = ("id", "status", "trigger", "started_at", "ended_at", "read", "written",
              "failed", "error_type")
    readonly_fields = fields
    ordering = ("-id",)
    extra = 0
    max_num = 0
    can_delete = False
    show_change_link = True

    def get_queryset(self, request: HttpRequest) -> QuerySet[Run]:
        return super().get_queryset(request).order_by("-id")


@admin.register(Flow)
class FlowAdmin(_ReadOnly):
    list_display = ("name", "status", "origin", "last_run_status", "last_run_at",
                    "cursor_text")
    list_filter = ("status", "origin", "last_run_status")
    search_fields = ("name",)
    inlines = (RunInline,)
    actions = ("run_now", "pause", "resume", "reset_cursor")

    has_run_permission = _perm("run")
    has_pause_permission = _perm("pause")
    has_reset_permission = _perm("reset")

    @admin.display(description="cursor")
    def cursor_text(self, obj: Flow) -> str:
        return "" if obj.cursor is None else str(obj.cursor)[:80]

    @admin.action(description="Run now", permissions=["run"])
    def run_now(self, request: HttpRequest, queryset: QuerySet[Flow]) -> None:
        _each(self, request, [f.name for f in queryset], "Run queued",
              lambda store, name: store.trigger(name, reason="admin"))

    @admin.action(description="Pause", permissions=["pause"])
    def pause(self, request: HttpRequest, queryset: QuerySet[Flow]) -> None:
        _each(self, request, [f.name for f in queryset], "Paused",
              lambda store, name: store.pause(name))

    @admin.action(description="Resume", permissions=["pause"])
    def resume(self, request: HttpRequest, queryset: QuerySet[Flow]) -> None:
        _each(self, request, [f.name for f in queryset], "Resumed",
              lambda store, name: store.resume(name))

    @admin.action(description="Reset cursor (read everything again)", permissions=["reset"])
    def reset_cursor(self, request: HttpRequest, queryset: QuerySet[Flow]) -> None:
        _each(self, request, [f.name for f in queryset], "Cursor reset",
              lambda store, name: store.reset_cursor(name))


@admin.register(Run)
class RunAdmin(_ReadOnly):
    list_display = ("id", "flow", "status", "trigger", "started_at", "ended_at", "read",
                    "written", "failed", "error_type")
    list_filter = ("status", "trigger", "flow")
    search_fields = ("flow__name", "error")
    list_select_related = ("flow",)


@admin.register(DeadLetter)
class DeadLetterAdmin(_ReadOnly):
    list_display = ("id", "flow", "error_type", "failed_at", "replayed_at", "replay_attempts")
    list_filter = ("flow", "error_type")
    search_fields = ("flow", "error")
    actions = ("replay",)

    has_replay_permission = _perm("replay")

    @admin.action(description="Replay", permissions=["replay"])
    def replay(self, request: HttpRequest, queryset: QuerySet[DeadLetter]) -> None:
        from active_data_flow.catalog import catalog
        from active_data_flow.runtimes.heartbeat.engine.deadletters import replay

        catalog.load(*conf.discover_flow_modules())

        by_flow: dict[str, list[int]] = {}
        for letter in queryset:
            by_flow.setdefault(letter.flow, []).append(letter.pk)
        with conf.flow_store() as store:
            for flow, ids in by_flow.items():
                try:
                    report = replay(store, flow, ids)
                except ActiveDataFlowError as exc:
                    self.message_user(request, f"{flow}: {exc}", messages.ERROR)
                    continue
                level = messages.ERROR if report.failed else messages.SUCCESS
                self.message_user(request, f"{flow}: replayed {len(report.replayed)}, failed "
                                  f"again {len(report.failed)}", level)
