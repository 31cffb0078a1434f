from django.urls import path

from sales import views

urlpatterns = [
    path("orders/", views.orders),
    path("orders/<int:pk>/", views.order_detail),
]
