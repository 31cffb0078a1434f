# The seed's model rename made state-only, so that it changes nothing in the database.

from django.db import migrations


class Migration(migrations.Migration):
    # unified_db's migrations up to 0022 refer to the model by its old name
    # (0004 adds the foreign key to members.fahaniecaresmember), so they must
    # run before it is renamed, also when a fresh database is migrated.
    dependencies = [
        ("members", "0001_initial"),
        ("unified_db", "0022_alter_personlink_phone"),
    ]

    # During a blue-green switch the old release (v1) and the new one serve
    # from the same database at once, before and after this migration runs.
    # Renaming the table would break whichever of them does not expect the
    # new name. So only Django's migration state changes: the model is called
    # BMParliamentMember, and its Meta.db_table pins the table it already
    # has. The database is left exactly as v1 built it.
    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                # First pin the table under the old name, so the rename below
                # does not move it to members_bmparliamentmember.
                migrations.AlterModelTable(
                    name="FahanieCaresMember",
                    table="members_fahaniecaresmember",
                ),
                migrations.RenameModel(
                    old_name="FahanieCaresMember",
                    new_name="BMParliamentMember",
                ),
            ],
            database_operations=[],
        ),
    ]
