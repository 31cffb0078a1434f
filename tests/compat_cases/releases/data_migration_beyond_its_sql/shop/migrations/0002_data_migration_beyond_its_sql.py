# A column added beside a data migration that writes two tables no SQL statement of the plan
# names: Category (its own app's, hashed row by row) and auth's Group (proven untouched by
# statistics, unless written). The reverse is a no-op: the writes stay after reversing.
from django.db import migrations, models


def retitle_and_add_staff_group(apps, schema_editor):
    """Category titles upper-cased; a "shop staff" Group for the new column's editors."""
    Category = apps.get_model('shop', 'Category')
    for category in Category.objects.all():
        category.title = category.title.upper()
        category.save(update_fields=['title'])
    apps.get_model('auth', 'Group').objects.get_or_create(name='shop staff')


class Migration(migrations.Migration):

    dependencies = [
        ('auth', '0001_initial'),
        ('shop', '0001_initial'),
    ]

    operations = [
        migrations.AddField(
            model_name='item',
            name='colour',
            field=models.CharField(max_length=30, null=True),
        ),
        migrations.RunPython(retitle_and_add_staff_group, migrations.RunPython.noop),
    ]
