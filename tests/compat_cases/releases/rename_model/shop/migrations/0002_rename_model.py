# What makemigrations writes when asked "Was the model shop.Category renamed to Section?"
# and answered yes. With contenttypes installed, migrate also renames Category's
# ContentType (RenameContentType) and post_migrate adds Section's four Permissions.
from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ('shop', '0001_initial'),
    ]

    operations = [
        migrations.RenameModel(
            old_name='Category',
            new_name='Section',
        ),
    ]
