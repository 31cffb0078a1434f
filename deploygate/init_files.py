"""The files `deploygate init` writes: rendered from the packaged templates with what init found, and written
without replacing a file that holds other content (``--force`` does)."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from importlib import resources as package_files
from pathlib import Path

from deploygate import __version__
from deploygate.init import Answers, Guess, Project, project_name

_MARKER = re.compile(r"@@(\w+)@@")


def _toml(value: str) -> str:
    return json.dumps(value)  # a TOML basic string escapes as JSON does, for every character used here


def _template(name: str) -> str:
    return package_files.files("deploygate").joinpath("templates", "init", f"{name}.tmpl").read_text()


def _fill(text: str, values: Mapping[str, str]) -> str:
    # Hand-written rather than string.Template: its $ collides with the shell's and GitHub's ${{ }}.
    missing = sorted({m.group(1) for m in _MARKER.finditer(text)} - set(values))
    if missing:
        raise KeyError(f"template values missing: {missing}")
    return _MARKER.sub(lambda m: values[m.group(1)], text)


def _table_lines(table: Mapping[str, str], empty_hint: str) -> str:
    if not table:
        return empty_hint
    return "\n".join(f"{name} = {_toml(value)}" for name, value in table.items())


def _from(guess: Guess) -> str:
    return "" if guess.source == "flag" else f"  (guessed from {guess.source})" if guess.source != "default" else "  (a default: check it)"


def render(project: Project, answers: Answers) -> dict[str, str]:
    """The files init writes, by path relative to the repository root, with their content."""
    name = project_name(project.root, answers.project)
    image_repo = answers.image_repo or f"registry.example.com/{name}"
    release = answers.release or f"{image_repo}:latest"
    if project.database_url.value:
        database_line = f"database_url = {_toml(project.database_url.value)}   # the variable that gets postgres://user:password@host:port/name{_from(project.database_url).replace('  (', ' (')}"
    else:
        database_line = f"db_env_prefix = {_toml(project.db_env_prefix.value)}   # the app reads <prefix>HOST, PORT, NAME, USER, PASSWORD{_from(project.db_env_prefix).replace('  (', ' (')}"
    checks_line = (
        f"checks = {_toml(answers.checks_dir)}     # your pytest-django checks, run inside the release's image"
        if answers.checks_dir
        else '# checks = "deploy_checks"     # your pytest-django checks, run inside the release\'s image'
    )
    hints = "".join(f'\n# {hint} = ""   # read by the settings: set it, or make it a secret below' for hint in project.env_hints)
    values = {
        "project": name,
        "project_toml": _toml(name),
        "proxy_port": str(answers.proxy_port),
        "db_name_toml": _toml(answers.db_name or name),
        "db_user_toml": _toml(answers.db_user or name),
        "release_toml": _toml(release),
        "app_port": project.app_port.value,
        "port_source": _from(project.app_port),
        "health_path_toml": _toml(project.health_path.value),
        "health_source": _from(project.health_path),
        "database_line": database_line,
        "checks_line": checks_line,
        "settings_module_toml": _toml(project.settings_module.value),
        "settings_source": f"   #{_from(project.settings_module)[1:]}" if _from(project.settings_module) else "",
        "env_lines": (_table_lines(answers.env, "") + hints).strip("\n"),
        "secret_lines": _table_lines(project.secrets, '# SECRET_KEY = "env:SECRET_KEY"'),
        "process_lines": _table_lines(answers.processes, '# worker = "python manage.py process_queue"'),
        "window_toml": _toml(answers.window),
        "timezone_toml": _toml(answers.timezone),
        "branch": answers.branch,
        "runs_on": answers.runs_on,
        "image_repo": image_repo,
        "version": __version__,
        "gitlab_tags": "production",
    }
    files = {"deploy.toml": _fill(_template("deploy.toml"), values), "noxfile.py": _fill(_template("noxfile.py"), values)}
    if answers.checks_dir:
        files[f"{answers.checks_dir}/test_deploy_checks.py"] = _fill(_template("test_deploy_checks.py"), values)
    if answers.github:
        files[".github/workflows/deploygate.yml"] = _fill(_template("github-workflow.yml"), values)
    if answers.gitlab:
        files[".gitlab-ci.yml"] = _fill(_template("gitlab-ci.yml"), values)
    return files


CREATED, UNCHANGED, KEPT, REPLACED = "created", "unchanged", "kept", "replaced"


def write(root: Path, files: Mapping[str, str], *, force: bool) -> dict[str, str]:
    """Write ``files`` under ``root``; returns what happened to each: created, unchanged (already
    this content), kept (there with other content; ``force`` replaces it) or replaced."""
    outcome = {}
    for relative, content in files.items():
        path = root / relative
        if path.exists():
            if path.read_text(errors="replace") == content:
                outcome[relative] = UNCHANGED
                continue
            if not force:
                outcome[relative] = KEPT
                continue
            outcome[relative] = REPLACED
        else:
            outcome[relative] = CREATED
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    return outcome
