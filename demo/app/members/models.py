"""Parliament members.

The release under test renames the model FahanieCaresMember to
BMParliamentMember. Every release is built from this one file, so the fields
live once in an abstract base and the concrete class is created under the
name the release uses (type() is the only way to choose a class name at run
time). ``Member`` is that class, whatever it is called.
"""

from bmparliament.release import RELEASE
from django.db import models

V1_MODEL_NAME = "FahanieCaresMember"
V2_MODEL_NAME = "BMParliamentMember"
# The table Django derives from the v1 class name; v2-safe keeps using it.
V1_DB_TABLE = "members_fahaniecaresmember"


class MemberFields(models.Model):
    """The member's columns, the same in every release."""

    member_code = models.CharField(max_length=20, unique=True)
    full_name = models.CharField(max_length=200)
    district = models.CharField(max_length=100)
    municipality = models.CharField(max_length=100)
    province = models.CharField(max_length=100)
    is_active = models.BooleanField(default=True)
    joined_on = models.DateField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        abstract = True

    def __str__(self):
        return f"{self.member_code} {self.full_name}"


def _member_meta():
    """Meta for the concrete class: keep the v1 table when the release asks to."""
    options = {"db_table": V1_DB_TABLE} if RELEASE.keep_db_names else {}
    return type("Meta", (), options)


Member = type(
    V2_MODEL_NAME if RELEASE.renamed else V1_MODEL_NAME,
    (MemberFields,),
    {"__module__": __name__, "Meta": _member_meta()},
)
