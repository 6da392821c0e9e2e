"""The shop: products, orders, and a report table the flows fill."""

from django.db import models


class Product(models.Model):
    name = models.CharField(max_length=100)
    price = models.DecimalField(max_digits=10, decimal_places=2)

    def __str__(self) -> str:
        return self.name


class Order(models.Model):
    product = models.ForeignKey(Product, models.PROTECT, related_name="orders")
    quantity = models.PositiveIntegerField()
    status = models.CharField(max_length=20, default="placed")
    updated_at = models.DateTimeField(auto_now=True)


class OrderReport(models.Model):
    """One row per order, kept up to date by the ``sync_order_reports`` flow."""

    id = models.BigIntegerField(primary_key=True)  # the order's id
    product_name = models.CharField(max_length=100)
    quantity = models.PositiveIntegerField()
    total = models.DecimalField(max_digits=12, decimal_places=2)
    status = models.CharField(max_length=20)
    updated_at = models.DateTimeField()
