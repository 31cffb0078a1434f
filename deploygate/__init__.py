"""deploygate: gated blue-green deploys of Django + PostgreSQL releases that carry migrations.

The library never imports pytest or nox: fixtures and the noxfile call into it.
"""

__version__ = "0.1.0"
