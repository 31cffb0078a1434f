# The seed's field rename made state-only, so that it changes nothing in the database.

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    # After the model rename, so the foreign key below points at BMParliamentMember.
    dependencies = [
        ("members", "0002_rename_fahaniecaresmember_bmparliamentmember"),
        ("unified_db", "0022_alter_personlink_phone"),
    ]

    # As in members 0002: v1 and this release must both work while they share
    # the database, so the column keeps its v1 name. The field is renamed in
    # Django's state only, with db_column pinning the column it already has.
    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                # First pin the column under the old name, so the rename below
                # does not move it to bm_parliament_member_id.
                migrations.AlterField(
                    model_name="personlink",
                    name="fahanie_cares_member",
                    field=models.ForeignKey(
                        blank=True,
                        db_column="fahanie_cares_member_id",
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="person_links",
                        to="members.bmparliamentmember",
                    ),
                ),
                migrations.RenameField(
                    model_name="personlink",
                    old_name="fahanie_cares_member",
                    new_name="bm_parliament_member",
                ),
            ],
            database_operations=[],
        ),
    ]
