# One root cause among changes that need nothing: a NOT NULL column without a database
# default (the release serving now omits it in every insert), two choices-only AlterFields
# (no SQL) and a data migration whose reverse is RunPython.noop (reversible).
from django.db import migrations, models


def set_missing_units(apps, schema_editor):
    """Items without a unit get the default one (AddField already filled every row: nothing changes here)."""
    Item = apps.get_model('shop', 'Item')
    Item.objects.filter(unit='').update(unit='pcs')


class Migration(migrations.Migration):

    dependencies = [
        ('shop', '0001_initial'),
    ]

    operations = [
        migrations.AddField(
            model_name='item',
            name='unit',
            field=models.CharField(default='pcs', max_length=10),
        ),
        migrations.AlterField(
            model_name='item',
            name='code',
            field=models.CharField(choices=[('SKU-0001', 'first'), ('SKU-0002', 'second')], max_length=20),
        ),
        migrations.AlterField(
            model_name='item',
            name='note',
            field=models.TextField(blank=True, choices=[('', 'none'), ('fragile', 'fragile')], default=''),
        ),
        migrations.RunPython(set_missing_units, migrations.RunPython.noop),
    ]
