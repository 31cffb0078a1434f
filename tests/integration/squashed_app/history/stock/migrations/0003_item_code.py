from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("stock", "0002_item_note")]
    operations = [migrations.AddField(model_name="item", name="code", field=models.CharField(db_index=True, default="", max_length=20))]
