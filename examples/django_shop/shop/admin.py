from django.contrib import admin

from shop.models import Order, OrderReport, Product

admin.site.register(Product)


@admin.register(Order)
class OrderAdmin(admin.ModelAdmin):
    list_display = ("id", "product", "quantity", "status", "updated_at")
    list_filter = ("status",)


@admin.register(OrderReport)
class OrderReportAdmin(admin.ModelAdmin):
    list_display = ("id", "product_name", "quantity", "total", "status", "updated_at")
