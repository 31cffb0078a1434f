"""A JSON API over orders: the newest twenty, one by id, and placing one (which queues a job for the worker).

CSRF-exempt: its clients are other services posting JSON, not browsers holding a session.
"""

import json

from django.db import transaction
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods

from ops.models import Job
from sales.models import Customer, Order

LIST_LIMIT = 20


def _as_dict(order: Order) -> dict:
    return {
        "id": order.pk,
        "reference": order.reference,
        "customer": order.customer.email,
        "status": order.status,
        "currency": order.currency,
        "total": str(order.total),
        "note": order.note,
        "placed_at": order.placed_at,
    }


@csrf_exempt
@require_http_methods(["GET", "POST"])
def orders(request: HttpRequest) -> JsonResponse:
    """GET: ``{"orders": [...]}``, newest first, at most LIST_LIMIT. POST: see ``_place``."""
    if request.method == "POST":
        return _place(request)
    newest = Order.objects.select_related("customer").order_by("-placed_at", "-id")[:LIST_LIMIT]
    return JsonResponse({"orders": [_as_dict(order) for order in newest]})


def _place(request: HttpRequest) -> JsonResponse:
    """201 ``{"id": ..., "reference": ...}`` for a body with ``email`` (and optional ``name``, ``note``); 400 otherwise."""
    try:
        payload = json.loads(request.body)
    except ValueError:
        return JsonResponse({"errors": {"body": ["not JSON"]}}, status=400)
    if not isinstance(payload, dict) or not isinstance(payload.get("email"), str) or "@" not in payload["email"]:
        return JsonResponse({"errors": {"email": ["an e-mail address is required"]}}, status=400)
    with transaction.atomic():
        customer, _ = Customer.objects.get_or_create(email=payload["email"], defaults={"name": payload.get("name", "")[:120]})
        order = Order.objects.create(customer=customer, note=str(payload.get("note", "")))
        Job.objects.create(kind="notify", payload={"order": order.pk})
    return JsonResponse({"id": order.pk, "reference": order.reference}, status=201)


@require_GET
def order_detail(request: HttpRequest, pk: int) -> JsonResponse:
    """One order as in the list with its number of lines, or 404 ``{"error": "not found"}``."""
    order = Order.objects.select_related("customer").filter(pk=pk).first()
    if order is None:
        return JsonResponse({"error": "not found"}, status=404)
    return JsonResponse({**_as_dict(order), "lines": order.lines.count()})
