"""URLs of the test project: the admin, and a login page for users who are not staff."""

from django.contrib import admin
from django.contrib.auth.views import LoginView
from django.urls import path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/login/", LoginView.as_view(template_name="admin/login.html",
                                              extra_context={"site_header": "Shop"})),
]
