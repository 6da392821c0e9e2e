"""Models of the test app: customers, their orders and tags, a report table with validators
and signals, and the contract's records."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import models
from django.db.models.signals import post_save, pre_save
from django.dispatch import receiver

SIGNALS: list[tuple[str, int | None]] = []  # (signal, pk) received by ReportCustomer


class Tag(models.Model):
    name = models.CharField(max_length=50)


class Customer(models.Model):
    email = models.CharField(max_length=120, unique=True)
    name = models.CharField(max_length=120)
    region = models.CharField(max_length=20, default="eu")
    updated_at = models.DateTimeField()
    tags = models.ManyToManyField(Tag, blank=True)


class Order(models.Model):
    customer = models.ForeignKey(Customer, models.CASCADE, related_name="orders")
    total = models.DecimalField(max_digits=10, decimal_places=2)
    placed_at = models.DateTimeField()


def _email(value: str) -> None:
    if "@" not in value:
        raise ValidationError(f"invalid email {value!r}")


class ReportCustomer(models.Model):
    id = models.BigIntegerField(primary_key=True)
    email = models.CharField(max_length=120, unique=True, validators=[_email])
    display_name = models.CharField(max_length=120)
    visits = models.IntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["display_name", "visits"],
                                               name="uq_report_name_visits")]


@receiver(pre_save, sender=ReportCustomer)
def _pre(sender: type, instance: ReportCustomer, **kwargs: object) -> None:
    SIGNALS.append(("pre_save", instance.pk))


@receiver(post_save, sender=ReportCustomer)
def _post(sender: type, instance: ReportCustomer, **kwargs: object) -> None:
    SIGNALS.append(("post_save", instance.pk))


class ContractRecord(models.Model):
    """The contract's records: ``{"id": int, "name": str | None}``."""

    id = models.BigIntegerField(primary_key=True)
    name = models.TextField(null=True, blank=True)


class Person(models.Model):
    """The table contract's source table."""

    id = models.BigIntegerField(primary_key=True)
    email = models.CharField(max_length=120, unique=True)
    name = models.CharField(max_length=80, null=True, blank=True)
    score = models.DecimalField(max_digits=10, decimal_places=2, default=0)
    updated_at = models.DateTimeField()


class Contact(models.Model):
    """The table contract's sink table: a unique, validated email."""

    id = models.BigIntegerField(primary_key=True)
    email = models.CharField(max_length=120, unique=True, validators=[_email])
    name = models.CharField(max_length=20, null=True, blank=True)
    score = models.DecimalField(max_digits=10, decimal_places=2, default=0)


class CopyLog(models.Model):
    """A sink table without a unique key: a record written twice shows up twice."""

    customer_id = models.BigIntegerField()
    email = models.CharField(max_length=120)
