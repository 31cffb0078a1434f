# v2's field rename followed by a step that always fails: a migration that breaks halfway.

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("members", "0002_rename_fahaniecaresmember_bmparliamentmember"),
        ("unified_db", "0022_alter_personlink_phone"),
    ]

    # Django runs each migration in its own transaction on Postgres. The
    # RAISE aborts this one, so the column rename before it is rolled back,
    # while members 0002, which ran and committed first, stays applied: the
    # database is left between releases, with the member table renamed and
    # the person-link column not.
    operations = [
        migrations.RenameField(
            model_name="personlink",
            old_name="fahanie_cares_member",
            new_name="bm_parliament_member",
        ),
        migrations.RunSQL("DO $$ BEGIN RAISE EXCEPTION 'v2-broken-migration fails halfway by design'; END $$;"),
    ]
