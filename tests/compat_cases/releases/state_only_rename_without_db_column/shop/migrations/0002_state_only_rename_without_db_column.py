# A half-done "safe" rename: Django's state learns the new name, the database keeps the
# column "code", but nothing tells the ORM to keep using "code" (no AlterField with
# db_column=...), so the ORM asks for a column "sku" that no schema has.
from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ('shop', '0001_initial'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.RenameField(
                    model_name='item',
                    old_name='code',
                    new_name='sku',
                ),
            ],
        ),
    ]
