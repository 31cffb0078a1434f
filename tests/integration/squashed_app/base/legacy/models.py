from django.db import models


class Old(models.Model):
    title = models.CharField(max_length=50)
