# A data migration with no reverse_code: Django refuses to unapply it (IrreversibleError).
from django.db import migrations


def fill_empty_notes(apps, schema_editor):
    """Backfill: items without a note get a placeholder."""
    Item = apps.get_model('shop', 'Item')
    Item.objects.filter(note='').update(note='(no note)')


class Migration(migrations.Migration):

    dependencies = [
        ('shop', '0001_initial'),
    ]

    operations = [
        migrations.RunPython(fill_empty_notes),
    ]
