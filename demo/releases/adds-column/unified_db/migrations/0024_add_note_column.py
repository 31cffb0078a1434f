# A column the ORM does not know (no model state): both releases keep working, but the DDL takes an
# ACCESS EXCLUSIVE lock, which a streaming standby must replay too. A long query there holds its
# replay back (up to max_standby_streaming_delay): the fault tests use it to keep a replica behind.

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("unified_db", "0023_rename_fahanie_cares_member_personlink_bm_parliament_member")]

    operations = [
        migrations.RunSQL(
            "ALTER TABLE unified_db_personlink ADD COLUMN review_note text NULL",
            reverse_sql="ALTER TABLE unified_db_personlink DROP COLUMN review_note",
        )
    ]
