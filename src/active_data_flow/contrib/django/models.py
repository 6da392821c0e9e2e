"""The flow store's tables seen by Django (unmanaged: the store's migrations own them).

They serve the admin (lists, filters, search, history) and reports in the project's own
code. Writes go through the store (``conf.flow_store()``), which keeps its invariants
(claims, leases, fencing tokens); treat these models as read-only.
"""

from __future__ import annotations

import json
from typing import Any

from django.db import models


class StoreJSONField(models.JSONField):
    """A JSON column of the flow store: PostgreSQL gives ``json`` values already decoded."""

    def from_db_value(self, value: Any, expression: Any, connection: Any) -> Any:
        if value is None or not isinstance(value, (str, bytes)):
            return value
        return json.loads(value)


class Flow(models.Model):
    """A flow known to the store."""

    id = models.BigAutoField(primary_key=True)
    name = models.CharField(max_length=200, unique=True)
    origin = models.CharField(max_length=8)
    status = models.CharField(max_length=16)
    spec = StoreJSONField()
    spec_hash = models.CharField(max_length=64)
    cursor = StoreJSONField(null=True, blank=True)
    cursor_updated_at = models.DateTimeField(null=True, blank=True)
    rerun_requested = models.BooleanField(default=False)
    last_run_id = models.BigIntegerField(null=True, blank=True)
    last_run_status = models.CharField(max_length=16, null=True, blank=True)
    last_run_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(null=True, blank=True)
    code_error = models.TextField(null=True, blank=True)
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()

    class Meta:
        managed = False
        db_table = "adf_flows"
        ordering = ("name",)
        permissions = (
            ("run_flow", "Can run a flow now"),
            ("pause_flow", "Can pause and resume a flow"),
            ("reset_cursor", "Can reset a flow's cursor"),
        )

    def __str__(self) -> str:
        return self.name


class Run(models.Model):
    """One run of a flow."""

    id = models.BigAutoField(primary_key=True)
    flow = models.ForeignKey(Flow, models.DO_NOTHING, db_column="flow_id", related_name="runs",
                             db_constraint=False)
    status = models.CharField(max_length=16)
    trigger = models.CharField(max_length=16)
    due_at = models.DateTimeField()
    worker_id = models.CharField(max_length=200, null=True, blank=True)
    attempt = models.IntegerField(default=0)
    started_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    read = models.IntegerField(default=0)
    written = models.IntegerField(default=0)
    skipped = models.IntegerField(default=0)
    failed = models.IntegerField(default=0)
    batches = models.IntegerField(default=0)
    duration_s = models.FloatField(null=True, blank=True)
    cursor_start = StoreJSONField(null=True, blank=True)
    cursor_end = StoreJSONField(null=True, blank=True)
    error_type = models.CharField(max_length=200, null=True, blank=True)
    error = models.TextField(null=True, blank=True)
    created_at = models.DateTimeField()

    class Meta:
        managed = False
        db_table = "adf_runs"
        ordering = ("-id",)

    def __str__(self) -> str:
        return f"run {self.pk} ({self.status})"


class DeadLetter(models.Model):
    """A message a flow could not process (``on_error="dead_letter"``)."""

    id = models.BigAutoField(primary_key=True)
    flow = models.CharField(max_length=200)
    run_id = models.BigIntegerField(null=True, blank=True)
    position = StoreJSONField(null=True, blank=True)
    error_type = models.CharField(max_length=200, null=True, blank=True)
    error = models.TextField(null=True, blank=True)
    message = StoreJSONField()
    meta = StoreJSONField(null=True, blank=True)
    failed_at = models.DateTimeField()
    replayed_at = models.DateTimeField(null=True, blank=True)
    replay_error = models.TextField(null=True, blank=True)
    replay_attempts = models.IntegerField(default=0)

    class Meta:
        managed = False
        db_table = "adf_dead_letters"
        ordering = ("-id",)
        permissions = (("replay_deadletter", "Can replay dead letters"),)

    def __str__(self) -> str:
        return f"dead letter {self.pk} of {self.flow}"
