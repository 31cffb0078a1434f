"""deploygate's benchmarks and keep-alive load generator: the project's own tools, not the library.

They use deploygate as a library and run from a checkout (``nox -s bench -- predeploy``,
``-- switch``, ``-- soak``); the wheel ships ``deploygate/`` only, so none of this is installed.
"""
