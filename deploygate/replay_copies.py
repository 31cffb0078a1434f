"""The replay's databases: one per run, made from the copy's as production has it, or from it once migrated.

One copy server holds the database as production has it (the backup restored); every run gets
a database of its own made from it (``CREATE DATABASE ... TEMPLATE``: a file copy, no restore),
so the writes a run replays never reach another run, and every run starts from the same rows.
The migrated schema is one more template, migrated once by the candidate image.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from psycopg import sql

from deploygate.config import Settings
from deploygate.database import connect
from deploygate.errors import DeployGateError
from deploygate.log import Say
from deploygate.platform import Platform
from deploygate.platform.images import Image
from deploygate.probe import Prober
from deploygate.rehearsal import DatabaseCopy

BEFORE, MIGRATED = "before", "migrated"  # the two schemas a run meets
_TEMPLATE_PREFIX = "dg_replay_"


class ReplayError(DeployGateError):
    """The replay could not run (a run's app never answered, the migrated template failed)."""


class ReplayCopies:
    """Databases made from the copy's as production has it (and once migrated), one per run, dropped after it."""

    def __init__(self, platform: Platform, settings: Settings, copy: DatabaseCopy, say: Say) -> None:
        self.platform, self.settings, self.copy, self.say = platform, settings, copy, say
        # CREATE DATABASE from the copy's own database: connected to another one, as a template allows no session.
        self._admin = dataclasses.replace(copy.host_address, name="postgres")
        with connect(self._admin) as conn:
            version = conn.info.server_version
        # FILE_COPY (15+) copies the files at once; the default (WAL_LOG) writes every block through the WAL.
        self._strategy = sql.SQL(" STRATEGY = FILE_COPY") if version >= 150000 else sql.SQL("")
        self._made: list[str] = []
        self._making = threading.Lock()
        self._migrated: str | None = None
        self._templates = 0
        self._migrating = threading.Lock()
        # How many more runs will ask for the migrated template: the last takes it as it is (one copy of production's
        # size less), once the others' copies are made. Set by the replayer from the directions it starts.
        self.migrated_runs = 0
        self._taking = threading.Lock()

    def close(self) -> None:
        for name in reversed(list(self._made)):
            self._drop(name)

    def _admin_execute(self, statement: sql.Composable) -> None:
        # A connection per statement: the runs' copies are made at the same time (at production size each is
        # seconds of file copying), where one shared connection would make them one after another.
        with connect(self._admin) as conn:
            conn.execute(statement)

    def _create(self, name: str, template: str) -> None:
        self._admin_execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name), sql.Identifier(template)) + self._strategy
        )
        with self._making:
            self._made.append(name)

    def _drop(self, name: str) -> None:
        self._admin_execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        with self._making:
            if name in self._made:
                self._made.remove(name)

    def _environment(self, name: str) -> dict[str, str]:
        return self.copy.app_environment(self.settings.replace(db_name=name))

    def migrated_template(self, candidate: Image) -> str:
        """The copy migrated by the candidate (once: the runs that ask at the same time wait for the first);
        raises ``ReplayError`` when its migration fails."""
        with self._migrating:
            return self._migrated_template(candidate)

    def _migrated_template(self, candidate: Image) -> str:
        if self._migrated is None:  # never made, or taken by the last run that needed it
            self._templates += 1  # a name of its own: one made before may still be in use by the run that took it
            name = f"{_TEMPLATE_PREFIX}migrated{self._templates}"
            self._create(name, self.settings.db_name)
            network = self.copy.scratch.database.network
            result = Prober.configured(self.platform, self.settings, candidate, self._environment(name), network=network).migrate()
            if result.error:
                raise ReplayError(f"the migration failed on the replay's copy: {result.error}")
            self._migrated = name
        return self._migrated

    @contextmanager
    def database(self, template: str, run: int) -> Iterator[dict[str, str]]:
        """A database made from ``template`` for one run (the migrated template itself, for the last run that
        needs it): the app's environment for it."""
        name = f"{_TEMPLATE_PREFIX}run{run}"
        if template == self.settings.db_name:
            self._create(name, template)
        else:
            with self._taking:  # the copies of the migrated template are made before its last run takes it
                if self.migrated_runs <= 1 and template == self._migrated:
                    name, self._migrated = template, None  # taken: a run asked for later gets one made again
                else:
                    self._create(name, template)
                self.migrated_runs = max(0, self.migrated_runs - 1)
        try:
            yield self._environment(name)
        finally:
            self._drop(name)
