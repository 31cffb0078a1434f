from django.contrib import admin
from django.urls import include, path

from bigapp.health import health

urlpatterns = [
    path("-/health", health),
    path("admin/", admin.site.urls),
    path("api/", include("sales.urls")),
]
