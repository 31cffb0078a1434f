"""A field of a type deploygate's probe does not know: it must be reported unchecked, never failed."""
from django.db import models


class PointField(models.Field):
    """A Postgres ``point``, written as ``(x,y)`` text."""

    def db_type(self, connection):
        return "point"
