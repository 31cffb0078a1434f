# Changes nothing; takes 8 s, inside the plan's one transaction. The fault tests restart
# production's database while it runs: the whole plan must roll back, nothing applied.

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("unified_db", "0023_rename_fahanie_cares_member_personlink_bm_parliament_member")]

    operations = [migrations.RunSQL("SELECT pg_sleep(8)", reverse_sql=migrations.RunSQL.noop)]
