from django.db import migrations, models


def first_shelf(apps, schema_editor):
    # A data migration's row: the release's own bookkeeping, like post_migrate's content type.
    apps.get_model("stock", "Shelf").objects.create(label="default")


class Migration(migrations.Migration):
    dependencies = [("stock", "0001_squashed_0003_item_code")]
    operations = [
        migrations.CreateModel(
            name="Shelf",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("label", models.CharField(max_length=20)),
            ],
        ),
        migrations.RunPython(first_shelf, migrations.RunPython.noop),
    ]
