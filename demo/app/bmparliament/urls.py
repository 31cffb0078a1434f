"""URL routes of the demo."""

from django.urls import include, path

from bmparliament import views_health

urlpatterns = [
    path("health/", views_health.health, name="health"),
    path("health/detailed/", views_health.health_detailed, name="health-detailed"),
    path("", include("unified_db.urls")),
]

handler500 = "bmparliament.views_health.server_error"
