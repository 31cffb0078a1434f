"""Person-link pages and JSON API.

Every query goes through the member relation by the release's name for it
(MEMBER_FIELD), so these endpoints fail exactly when the release's ORM names
do not match the schema, as real traffic would.
"""

import json
import logging
import uuid

from bmparliament.caching import cached
from bmparliament.release import RELEASE
from bmparliament.routers import read_from_replica
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import connection, transaction
from django.http import HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods
from members.models import Member

from unified_db.models import MEMBER_FIELD, LinkAudit, PersonLink

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 200
# Ids and offsets are Postgres bigints; larger numbers are bad input, not a 500.
MAX_BIGINT = 2**63 - 1
SOURCES = {value for value, _ in PersonLink.Source.choices}
logger = logging.getLogger(__name__)
# What the hidden-errors release answers instead of the page: 200, so the proxy sees nothing wrong.
ERROR_PAGE = "<!doctype html><title>Person links</title><p>Something went wrong. Please try again later.</p>"


class BadRequest(ValueError):
    """Input the client must fix; its message is sent back with a 400."""


def _links():
    """Links with their member fetched in the same query."""
    return PersonLink.objects.select_related(MEMBER_FIELD).order_by("id")


def link_as_dict(link):
    """The JSON shape of one link, shared by list, detail and create."""
    member = getattr(link, MEMBER_FIELD)
    return {
        "id": link.id,
        "person_uuid": str(link.person_uuid),
        "full_name": link.full_name,
        "email": link.email,
        "source": link.source,
        "member": (None if member is None else {"id": member.id, "member_code": member.member_code, "full_name": member.full_name}),
    }


def _positive_int(params, name, default=None):
    """Read a positive integer query parameter, or raise BadRequest."""
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"{name} must be an integer") from None
    if not 1 <= value <= MAX_BIGINT:
        raise BadRequest(f"{name} must be between 1 and {MAX_BIGINT}")
    return value


def _members_on_page(rows):
    """How many rows of the page have a member (the hidden-errors release reads a key no row has)."""
    if RELEASE.behaviour == "raw-sql":
        return _members_on_page_sql(rows)
    key = "membre" if RELEASE.behaviour == "hidden-errors" else "member"
    count = 0
    for row in rows:
        count += row[key] is not None
    return count


def _members_on_page_sql(rows):
    """The raw-sql release counts in SQL, naming the column after the field's new name: the ORM maps the
    field onto the old column (keep_db_names), this query does not see that, and fails on every schema."""
    ids = [row["id"] for row in rows]
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT count(*) FROM {PersonLink._meta.db_table} WHERE id = ANY(%s) AND bm_parliament_member_id IS NOT NULL", [ids]
        )
        return cursor.fetchone()[0]


@require_GET
def link_list_page(request):
    """HTML table of the first 50 links and their members.

    A failure is logged with its traceback and answered with a friendly page and 200,
    as many production apps do: the proxy sees a success, only the app's log the error.
    """
    rows = read_from_replica(lambda: [link_as_dict(link) for link in _links()[:DEFAULT_PAGE_SIZE]])
    try:
        with_member = _members_on_page(rows)
    except KeyError:
        logger.exception("the links page could not be rendered")
        return HttpResponse(ERROR_PAGE, status=200)
    return render(request, "unified_db/links.html", {"rows": rows, "release": RELEASE, "with_member": with_member})


@csrf_exempt
@require_http_methods(["GET", "POST"])
def links(request):
    """GET: one page of links, optionally of one member. POST: create a link."""
    try:
        if request.method == "POST":
            return _create_link(request)
        return _list_links(request)
    except BadRequest as exc:
        return JsonResponse({"error": str(exc)}, status=400)


def _list_links(request):
    """One page of links ordered by id.

    The table holds hundreds of thousands of rows, so there is no total
    count; fetching one row more than the page tells whether another follows.
    """
    page = _positive_int(request.GET, "page", 1)
    page_size = min(_positive_int(request.GET, "page_size", DEFAULT_PAGE_SIZE), MAX_PAGE_SIZE)
    member_id = _positive_int(request.GET, "member")
    offset = (page - 1) * page_size
    if offset > MAX_BIGINT:
        raise BadRequest("page is too large")
    queryset = _links()
    if member_id is not None:
        queryset = queryset.filter(**{f"{MEMBER_FIELD}_id": member_id})
    # A list may lag a little behind the writes; a link's detail never does.
    found = read_from_replica(lambda: list(queryset[offset : offset + page_size + 1]))
    results = [link_as_dict(link) for link in found[:page_size]]
    return JsonResponse(
        {
            "page": page,
            "page_size": page_size,
            "count_on_page": len(results),
            "has_next": len(found) > page_size,
            "results": results,
        }
    )


def _required_text(body, name):
    """A non-empty string for PersonLink field `name` from the request body, or raise BadRequest."""
    max_length = PersonLink._meta.get_field(name).max_length
    value = body.get(name)
    if not isinstance(value, str) or not value.strip():
        raise BadRequest(f"{name} is required")
    value = value.strip()
    if len(value) > max_length:
        raise BadRequest(f"{name} is longer than {max_length} characters")
    return value


def _create_link(request):
    """Create a link from a JSON body and answer 201 with it."""
    try:
        body = json.loads(request.body or b"")
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise BadRequest("body must be JSON") from None
    if not isinstance(body, dict):
        raise BadRequest("body must be a JSON object")

    full_name = _required_text(body, "full_name")
    email = _required_text(body, "email")
    try:
        validate_email(email)
    except ValidationError:
        raise BadRequest("email is not a valid address") from None
    source = body.get("source", PersonLink.Source.MANUAL)
    if not isinstance(source, str) or source not in SOURCES:
        raise BadRequest(f"source must be one of {', '.join(sorted(SOURCES))}")
    member = None
    member_id = body.get("member_id")
    if member_id is not None:
        if isinstance(member_id, bool) or not isinstance(member_id, int):
            raise BadRequest("member_id must be an integer")
        in_range = 1 <= member_id <= MAX_BIGINT
        member = Member.objects.filter(pk=member_id).first() if in_range else None
        if member is None:
            raise BadRequest(f"member {member_id} does not exist")

    if RELEASE.behaviour == "drops-member":
        member = None  # the deliberately broken release: its API forgets the member it was given
    with transaction.atomic():
        link = PersonLink.objects.create(
            person_uuid=uuid.uuid4(),
            full_name=full_name,
            email=email,
            source=source,
            **{MEMBER_FIELD: member},
        )
        LinkAudit.objects.create(person_link=link, action="created via api")
    return JsonResponse(link_as_dict(link), status=201)


@require_GET
def link_detail(request, link_id):
    """One link, or a JSON 404."""
    link = cached(f"link:{link_id}", lambda: _links().filter(pk=link_id).first()) if link_id <= MAX_BIGINT else None
    if link is None:
        return JsonResponse({"error": f"link {link_id} not found"}, status=404)
    return JsonResponse(link_as_dict(link))
