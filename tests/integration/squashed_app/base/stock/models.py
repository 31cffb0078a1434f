from django.db import models


class Item(models.Model):
    name = models.CharField(max_length=100)
    note = models.TextField(default="")
    code = models.CharField(max_length=20, db_index=True, default="")
