"""The probe's exercise, without an engine or a database: seeded values (two exercises of one release write
the same values) and the models a scope selects.

The probe's modules run inside the app's image after ``django.setup()``; here they run in a
child Python with minimal settings (no database is ever connected), so this test run's
own process never configures Django.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from deploygate.probes import DJANGO_PROBE

SCRIPT = textwrap.dedent(
    """
    import json, sys
    import django
    from django.conf import settings

    settings.configure(USE_TZ=True, INSTALLED_APPS=[], DATABASES={"default": {"ENGINE": "django.db.backends.postgresql", "NAME": "x"}})
    django.setup()
    from django.db import models

    sys.path.insert(0, sys.argv[1])
    import deploygate_values as values

    class Thing(models.Model):
        name = models.CharField(max_length=40)
        email = models.EmailField()
        uuid = models.UUIDField()
        address = models.GenericIPAddressField()
        data = models.JSONField()
        seen = models.DateTimeField()

        class Meta:
            app_label = "probe_test"

    class Other(models.Model):
        name = models.CharField(max_length=40)

        class Meta:
            app_label = "probe_test"

    def run():
        values.reset_seed()
        fields = [Thing._meta.get_field(n) for n in ("name", "email", "uuid", "address", "data", "seen")]
        first = [str(values.fresh_value(f)) for f in fields]
        again = [str(values.fresh_value(f)) for f in fields]
        other = str(values.fresh_value(Other._meta.get_field("name")))
        longest = values.boundary_values(Thing._meta.get_field("name"))[0][1]
        return {"first": first, "again": again, "other": other, "longest": longest}

    print(json.dumps([run(), run()]))
    """
)


def test_two_runs_write_the_same_values_and_each_value_is_fresh() -> None:
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(DJANGO_PROBE.parent)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    one, two = json.loads(done.stdout)
    assert one == two, "a second exercise (another run, another schema) must write exactly the same values"
    assert all(a != b for a, b in zip(one["first"][:5], one["again"][:5], strict=True)), "each call gives the field an unused value"
    assert one["first"][5] == one["again"][5] == "2001-02-03 04:05:06+00:00", "one fixed instant, never the clock"
    assert one["other"] != one["first"][0], "the seed includes the model's label"
    assert len(one["longest"]) == 40 and one["longest"].startswith("dg")


SCOPE_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import django
    from django.conf import settings

    settings.configure(INSTALLED_APPS=[], DATABASES={"default": {"ENGINE": "django.db.backends.postgresql", "NAME": "x"}})
    django.setup()
    from django.db import models

    sys.path.insert(0, sys.argv[1])
    from deploygate_exercise import in_scope

    class Member(models.Model):
        class Meta:
            app_label = "probe_test"

    class Link(models.Model):
        member = models.ForeignKey(Member, on_delete=models.CASCADE)

        class Meta:
            app_label = "probe_test"

    class Group(models.Model):
        members = models.ManyToManyField(Member)

        class Meta:
            app_label = "probe_test"

    class Unrelated(models.Model):
        class Meta:
            app_label = "probe_test"

    everything = [Member, Link, Group, Unrelated]
    names = lambda chosen: [m.__name__ for m in chosen]
    print(json.dumps({
        "member": names(in_scope(everything, {"tables": ["probe_test_member"], "apps": []})),
        "through": names(in_scope(everything, {"tables": ["probe_test_group_members"], "apps": []})),
        "nothing": names(in_scope(everything, {"tables": [], "apps": []})),
        "app": names(in_scope(everything, {"tables": [], "apps": ["probe_test"]})),
        "all": names(in_scope(everything, None)),
    }))
    """
)


def test_the_probe_exercises_the_changed_models_and_those_reaching_them() -> None:
    done = subprocess.run([sys.executable, "-c", SCOPE_SCRIPT, str(DJANGO_PROBE.parent)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    chosen = json.loads(done.stdout)
    assert chosen["member"] == ["Member", "Link", "Group"], "a foreign key or a many-to-many reaching Member brings its model in"
    assert chosen["through"] == ["Group"] and chosen["nothing"] == []
    assert chosen["app"] == chosen["all"] == ["Member", "Link", "Group", "Unrelated"]
