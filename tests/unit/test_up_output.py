"""`up` keeps the app's migrate output off the terminal: one summary line, and job output said line by line."""

from __future__ import annotations

from deploygate.platform.docker_containers import whole_lines
from deploygate.probe import AppliedMigration, MigrateResult
from deploygate.production import migrate_summary


def _migration(name: str, seconds: float, error: str | None = None) -> AppliedMigration:
    return AppliedMigration("shop", name, "forwards", seconds, 1, {}, error)


def test_the_summary_is_one_line_with_count_time_and_slowest() -> None:
    done = MigrateResult(migrations=[_migration("0001_initial", 0.5), _migration("0002_big", 2.25)], error=None)
    assert migrate_summary("shop:1.4", done, 3.04) == "migrated with shop:1.4: 2 migrations applied in 3.0s (slowest shop.0002_big, 2.25s)"
    assert migrate_summary("shop:1.4", MigrateResult(migrations=[], error=None), 0.8) == "migrated with shop:1.4: nothing to apply (0.8s)"


def test_a_result_line_split_across_log_chunks_is_said_whole() -> None:
    result = "DEPLOYGATE_RESULT " + '{"migrations": [' + ", ".join(["{}"] * 5000) + "]}"
    chunks = ["  Applying shop.0001... OK\n", result[:1000], result[1000:70000], result[70000:] + "\n", "tail without newline"]
    said, pending = [], ""
    for chunk in chunks:
        lines, pending = whole_lines(pending, chunk)
        said += lines
    assert said == ["  Applying shop.0001... OK", result]
    assert pending == "tail without newline"
