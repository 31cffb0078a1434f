from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("stock", "0001_initial")]
    operations = [migrations.AddField(model_name="item", name="note", field=models.TextField(default=""))]
