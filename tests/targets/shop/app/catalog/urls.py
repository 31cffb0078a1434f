from django.urls import path

from catalog import views

urlpatterns = [
    path("things/", views.things),
    path("things/<int:pk>/", views.thing_detail),
]
