"""Routes of the person-link pages and API."""

from django.urls import path

from unified_db import views

urlpatterns = [
    path("", views.link_list_page, name="links-page"),
    path("api/links/", views.links, name="links"),
    path("api/links/<int:link_id>/", views.link_detail, name="link-detail"),
]
