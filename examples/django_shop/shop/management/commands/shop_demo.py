"""``manage.py shop_demo``: migrate, demo data, a demo admin user, the flows registered."""

import datetime as dt
import random
from decimal import Decimal

from django.contrib.auth.models import User
from django.core.management import call_command
from django.core.management.base import BaseCommand

from shop.models import Order, Product


class Command(BaseCommand):
    help = "Set the demo up: tables, products and orders, user admin/admin, flows."

    def handle(self, *args: object, **options: object) -> None:
        call_command("migrate", verbosity=0)
        if not Product.objects.exists():
            rng = random.Random(7)
            products = Product.objects.bulk_create(
                Product(name=name, price=Decimal(price))
                for name, price in (("Teapot", "24.90"), ("Mug", "8.50"), ("Kettle", "39.00")))
            Order.objects.bulk_create(
                Order(product=rng.choice(products), quantity=rng.randint(1, 5))
                for _ in range(50))
            self.stdout.write("demo data: 3 products, 50 orders")
        if not User.objects.filter(username="admin").exists():
            User.objects.create_superuser("admin", password="admin")  # a demo, on localhost
            self.stdout.write("user admin / password admin (staff)")
        call_command("adf", "sync")
        self.stdout.write(f"ready at {dt.datetime.now():%H:%M:%S}: run manage.py shop_serve")
