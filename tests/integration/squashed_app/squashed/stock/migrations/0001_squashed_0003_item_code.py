from django.db import migrations, models


class Migration(migrations.Migration):
    # As `squashmigrations stock 0003` writes it; the replaced files are gone from this release.
    replaces = [("stock", "0001_initial"), ("stock", "0002_item_note"), ("stock", "0003_item_code")]
    initial = True
    dependencies = []
    operations = [
        migrations.CreateModel(
            name="Item",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("name", models.CharField(max_length=100)),
                ("note", models.TextField(default="")),
                ("code", models.CharField(db_index=True, default="", max_length=20)),
            ],
        ),
    ]
