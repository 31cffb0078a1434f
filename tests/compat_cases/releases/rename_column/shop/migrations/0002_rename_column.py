# What makemigrations writes when asked "Did you rename item.code to item.sku?" and
# answered yes: the column itself is renamed.
from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ('shop', '0001_initial'),
    ]

    operations = [
        migrations.RenameField(
            model_name='item',
            old_name='code',
            new_name='sku',
        ),
    ]
