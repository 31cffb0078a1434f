"""One person's identities across the CRM, the voter roll and events.

The release under test renames PersonLink.fahanie_cares_member to
bm_parliament_member. The fields that never change live in an abstract base;
the concrete PersonLink adds the member foreign key under the name the
release uses (a class body cannot take an attribute name from a variable,
hence type()). Code elsewhere reaches the relation through MEMBER_FIELD.
"""

import uuid

from bmparliament.release import RELEASE
from django.db import models
from members.models import Member

MEMBER_FIELD = "bm_parliament_member" if RELEASE.renamed else "fahanie_cares_member"
# The column Django derives from the v1 field name; v2-safe keeps using it.
V1_MEMBER_COLUMN = "fahanie_cares_member_id"


class PersonLinkFields(models.Model):
    """PersonLink's columns other than the member foreign key."""

    class Source(models.TextChoices):
        CRM = "crm", "CRM"
        VOTER_ROLL = "voter_roll", "Voter roll"
        EVENT = "event", "Event"
        MANUAL = "manual", "Manual"

    person_uuid = models.UUIDField(default=uuid.uuid4, editable=False, unique=True)
    full_name = models.CharField(max_length=200)
    email = models.EmailField(db_index=True)
    phone = models.CharField(max_length=32, blank=True)
    source = models.CharField(max_length=20, choices=Source.choices, default=Source.MANUAL)
    crm_contact_id = models.CharField(max_length=64, null=True, blank=True)
    voter_id = models.CharField(max_length=32, null=True, blank=True, unique=True)
    confidence = models.FloatField(default=1.0)
    is_verified = models.BooleanField(default=False)
    notes = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        abstract = True
        ordering = ["id"]
        indexes = [models.Index(fields=["created_at"], name="%(class)s_created_at_idx")]

    def __str__(self):
        return f"{self.full_name} <{self.email}>"


def _member_foreign_key():
    """The member relation, on the v1 column when the release keeps DB names."""
    options = {"db_column": V1_MEMBER_COLUMN} if RELEASE.keep_db_names else {}
    return models.ForeignKey(
        Member,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="person_links",
        **options,
    )


PersonLink = type(
    "PersonLink",
    (PersonLinkFields,),
    {"__module__": __name__, MEMBER_FIELD: _member_foreign_key()},
)


class LinkAudit(models.Model):
    """What happened to a PersonLink and when."""

    person_link = models.ForeignKey(PersonLink, on_delete=models.CASCADE, related_name="audits")
    action = models.CharField(max_length=32)
    at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-at"]
