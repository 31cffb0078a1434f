"""A tiny JSON API over Things: the newest twenty, one by id, and creating one from a JSON body.

CSRF-exempt: its clients are other services posting JSON, not browsers holding a session.
"""

import json

from django.core.exceptions import ValidationError
from django.db import transaction
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods

from catalog.models import Supplier, Thing

LIST_LIMIT = 20
# Fields a client may write, answered back as they are stored.
PLAIN_FIELDS = ("name", "address", "tags", "data")


def _as_dict(thing: Thing) -> dict:
    return {
        "id": thing.pk,
        "uuid": thing.uuid,
        **{field: getattr(thing, field) for field in PLAIN_FIELDS},
        "supplier": thing.supplier.name if thing.supplier else None,
        "created_at": thing.created_at,
        "processed_at": thing.processed_at,
    }


@csrf_exempt
@require_http_methods(["GET", "POST"])
def things(request: HttpRequest) -> JsonResponse:
    """GET: ``{"things": [...]}``, newest first, at most LIST_LIMIT. POST: see ``_create``."""
    if request.method == "POST":
        return _create(request)
    newest = Thing.objects.select_related("supplier").order_by("-created_at", "-id")[:LIST_LIMIT]
    return JsonResponse({"things": [_as_dict(thing) for thing in newest]})


def _create(request: HttpRequest) -> JsonResponse:
    """201 ``{"id": ..., "uuid": ...}`` for a valid body; 400 with the reasons otherwise.

    The body holds PLAIN_FIELDS and optionally ``supplier``, a supplier's name (created on first use).
    """
    try:
        payload = json.loads(request.body)
    except ValueError:
        return JsonResponse({"errors": {"body": ["not JSON"]}}, status=400)
    if not isinstance(payload, dict):
        return JsonResponse({"errors": {"body": ["expected a JSON object"]}}, status=400)
    thing = Thing(**{field: payload[field] for field in PLAIN_FIELDS if field in payload})
    supplier_name = payload.get("supplier")
    try:
        thing.full_clean(exclude=["supplier"])
        if supplier_name is not None:
            Supplier(name=supplier_name).full_clean(validate_unique=False)
    except ValidationError as exc:
        return JsonResponse({"errors": exc.message_dict}, status=400)
    with transaction.atomic():
        if supplier_name is not None:
            thing.supplier, _ = Supplier.objects.get_or_create(name=supplier_name)
        thing.save()
    return JsonResponse({"id": thing.pk, "uuid": thing.uuid}, status=201)


@require_GET
def thing_detail(request: HttpRequest, pk: int) -> JsonResponse:
    """One Thing as in the list, or 404 ``{"error": "not found"}``."""
    thing = Thing.objects.select_related("supplier").filter(pk=pk).first()
    if thing is None:
        return JsonResponse({"error": "not found"}, status=404)
    return JsonResponse(_as_dict(thing))
