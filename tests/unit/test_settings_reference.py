"""The settings reference: generated from config.OPTIONS, printed by `deploygate settings`, and the README's table."""

from __future__ import annotations

from pathlib import Path

from deploygate import settings_reference
from deploygate.cli import main
from deploygate.config import OPTIONS

README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_readme_table_is_the_generated_one() -> None:
    found = settings_reference.readme_section(README.read_text())
    assert found is not None, f"README.md lacks the markers {settings_reference.README_BEGIN!r} ... {settings_reference.README_END!r}"
    assert found == settings_reference.markdown(), (
        "README.md's settings table is out of date: replace it with `python -m deploygate settings --format markdown`"
    )


def test_every_setting_has_a_row_with_table_flat_name_env_default_and_help() -> None:
    rows = settings_reference.markdown().splitlines()[2:]
    assert len(rows) == len(OPTIONS)
    window = next(row for row in rows if "`monitor_window_s`" in row)
    assert window.startswith("| `[deploy]` `monitor_window_s` | `monitor_window_s` | `DEPLOYGATE_MONITOR_WINDOW_S` | `300` |")
    assert all(option.help.strip() for option in OPTIONS)
    write = next(row for row in rows if "`traffic_write_path`" in row)
    assert "integer id" in write and "created" in write


def test_secrets_defaults_are_never_shown() -> None:
    password = next(option for option in OPTIONS if option.secret)
    assert settings_reference.default_text(password) == '""'


def test_the_command_prints_every_setting(capsys) -> None:
    assert main(["settings"]) == 0
    out = capsys.readouterr().out
    assert "[deploy]\n" in out and "  monitor_window_s = 300    (--set monitor_window_s=..., env DEPLOYGATE_MONITOR_WINDOW_S)" in out
    assert all(option.env in out for option in OPTIONS)
    assert main(["settings", "--format", "markdown"]) == 0
    assert capsys.readouterr().out == settings_reference.markdown()
