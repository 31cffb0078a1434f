# What makemigrations writes for null=True -> null=False when told to leave existing rows
# alone (--noinput, or "Ignore for now"): SET NOT NULL fails on the rows that hold NULL.

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('shop', '0001_initial'),
    ]

    operations = [
        migrations.AlterField(
            model_name='item',
            name='price',
            field=models.DecimalField(decimal_places=2, max_digits=8),
        ),
    ]
