from django.contrib import admin
from django.urls import include, path

from shop.health import healthz

urlpatterns = [
    path("healthz", healthz),
    path("admin/", admin.site.urls),
    path("api/", include("catalog.urls")),
]
