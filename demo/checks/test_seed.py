"""The seed's own verification, written as a team writes checks: pytest-django tests of the release.

deploygate runs them inside the release's image (the code that will run): on the migrated
copy of production before the deploy, and against production from the new color before
traffic switches to it. Each database test runs in a transaction that is rolled back, so
production keeps no trace of them. Run one alone:
``nox -s predeploy -- --candidate v2-safe -k test_a_link_written_through_the_new_name_reads_back``.
"""

import pytest
from django.db.migrations.recorder import MigrationRecorder
from django.test import Client
from members.models import Member
from unified_db.models import PersonLink

RENAME_MIGRATIONS = {
    ("members", "0002_rename_fahaniecaresmember_bmparliamentmember"),
    ("unified_db", "0023_rename_fahanie_cares_member_personlink_bm_parliament_member"),
}


def test_the_release_calls_the_member_model_bmparliamentmember():
    # No database needed: the release's own models, as imported.
    assert Member.__name__ == "BMParliamentMember"
    assert PersonLink._meta.get_field("bm_parliament_member").related_model is Member


@pytest.mark.django_db
def test_both_rename_migrations_are_applied():
    applied = set(MigrationRecorder.Migration.objects.values_list("app", "name"))
    assert RENAME_MIGRATIONS <= applied, f"not applied: {sorted(RENAME_MIGRATIONS - applied)}"


@pytest.mark.django_db
def test_links_reach_their_member_through_the_new_name():
    link = PersonLink.objects.filter(bm_parliament_member__isnull=False).select_related("bm_parliament_member").first()
    assert link is not None, "no link has a member"
    assert link.bm_parliament_member.person_links.filter(pk=link.pk).exists()


@pytest.mark.django_db
def test_a_link_written_through_the_new_name_reads_back():
    member = Member.objects.order_by("pk").first()
    link = PersonLink.objects.create(full_name="App Check", email="app-check@example.invalid", bm_parliament_member=member)
    assert PersonLink.objects.get(pk=link.pk).bm_parliament_member_id == member.pk


@pytest.mark.django_db
def test_the_api_keeps_the_member_of_a_link_it_creates():
    member = Member.objects.order_by("pk").first()
    body = {"full_name": "Via The API", "email": "api-check@example.invalid", "member_id": member.pk}
    answer = Client().post("/api/links/", body, content_type="application/json")
    assert answer.status_code == 201, answer.content
    kept = PersonLink.objects.get(pk=answer.json()["id"]).bm_parliament_member_id
    assert kept == member.pk, f"the API dropped the member of the link it created (member {member.pk}, stored {kept})"
