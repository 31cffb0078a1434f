"""`deploygate init` on small Django trees, the files it writes, and the CI files deploygate ships (action.yml, ci/gitlab)."""

from __future__ import annotations

import runpy
import signal
import subprocess
from pathlib import Path

import pytest
import yaml

import deploygate
from deploygate import cli, config, init
from deploygate.errors import ConfigError
from deploygate.signal_relay import relay

ROOT = Path(__file__).resolve().parents[2]
UNATTENDED = ["--project", "mysite", "--release", "registry.example.com/mysite:1.4", "--image-repo", "registry.example.com/mysite"]


def _tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


URL_STYLE = {
    "manage.py": 'import os\nos.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")\n',
    "mysite/__init__.py": "",
    "mysite/settings.py": (
        "import os\nimport dj_database_url\n"
        'SECRET_KEY = os.environ["DJANGO_SECRET_KEY"]\n'
        'DEBUG = os.getenv("DEBUG") == "1"\n'
        'DATABASES = {"default": dj_database_url.parse(os.environ.get("DATABASE_URL"))}\n'
    ),
    "mysite/urls.py": 'from django.urls import path\nurlpatterns = [path("admin/", admin), path("health/", health)]\n',
    "Dockerfile": "FROM python:3.12\nEXPOSE 8080\n",
}


def test_a_url_style_project_is_read_from_its_settings_urls_and_dockerfile(tmp_path: Path) -> None:
    project = init.discover(_tree(tmp_path, URL_STYLE), init.Answers())
    assert project.manage_py == tmp_path / "manage.py"
    assert project.settings_module == init.Guess("mysite.settings", "manage.py")
    assert project.database_url == init.Guess("DATABASE_URL", "mysite/settings.py")
    assert project.health_path == init.Guess("/health/", "mysite/urls.py")
    assert project.app_port == init.Guess("8080", "Dockerfile")
    assert project.secrets == {"DJANGO_SECRET_KEY": "env:DJANGO_SECRET_KEY"}
    assert project.env_hints == ("DEBUG",)


def test_a_db_prefix_project_with_a_settings_package_and_an_included_health_url(tmp_path: Path) -> None:
    _tree(
        tmp_path,
        {
            "src/manage.py": "import sys\n",  # no settings module named: found beside it
            "src/config/__init__.py": "",
            "src/config/urls.py": 'urlpatterns = [path("ops/", include("ops.urls"))]\n',
            "src/config/settings/__init__.py": "",
            "src/config/settings/base.py": (
                "from os import getenv\n"
                'DATABASES = {"default": {"HOST": getenv("POSTGRES_HOST"), "NAME": getenv("POSTGRES_DB"), "PASSWORD": getenv("POSTGRES_PASSWORD")}}\n'
            ),
            "src/config/settings/production.py": 'from .base import *\nSENTRY_TOKEN = env("SENTRY_TOKEN")\n',
            "src/ops/__init__.py": "",
            "src/ops/urls.py": 'urlpatterns = [re_path(r"^healthz$", views.healthz)]\n',
        },
    )
    project = init.discover(tmp_path, init.Answers())
    assert project.manage_py == tmp_path / "src" / "manage.py"
    assert project.settings_module.value == "config.settings.production"
    assert project.database_url.value == "" and project.db_env_prefix.value == "POSTGRES_"
    # The database's own password is deploygate's business, not a secret the team gives.
    assert project.secrets == {"SENTRY_TOKEN": "env:SENTRY_TOKEN"}
    assert project.health_path.value == "/ops/healthz"
    assert project.app_port == init.Guess("8000", "default")


def test_flags_win_over_guesses_and_nothing_found_is_said(tmp_path: Path) -> None:
    _tree(tmp_path, URL_STYLE)
    answers = init.Answers(settings_module="mysite.prod", db_env_prefix="DB_", health_path="up", app_port=9000)
    project = init.discover(tmp_path, answers)
    assert (project.settings_module.value, project.database_url.value, project.db_env_prefix.value) == ("mysite.prod", "", "DB_")
    assert (project.health_path, project.app_port) == (init.Guess("/up", "flag"), init.Guess("9000", "flag"))
    _tree(tmp_path / "bare", {"mysite/__init__.py": "", "mysite/urls.py": "urlpatterns = []\n"})
    with pytest.raises(ConfigError, match="no manage.py"):
        init.discover(tmp_path / "bare", init.Answers())
    _tree(tmp_path / "nosettings", {"manage.py": "import sys\n"})
    with pytest.raises(ConfigError, match="--settings-module"):
        init.discover(tmp_path / "nosettings", init.Answers())


def test_the_shop_is_read_without_a_hint(tmp_path: Path) -> None:
    project = init.discover(ROOT / "tests" / "targets" / "shop", init.Answers())
    assert (project.settings_module.value, project.database_url.value, project.health_path.value) == (
        "shop.settings",
        "DATABASE_URL",
        "/healthz",
    )
    assert project.secrets == {"SECRET_KEY": "env:SECRET_KEY"}


def _files(root: Path) -> dict[str, tuple[bytes, int]]:
    return {str(p.relative_to(root)): (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(root.rglob("*")) if p.is_file()}


def test_init_twice_changes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _tree(tmp_path, URL_STYLE)
    assert cli.main(["init", "--path", str(tmp_path), *UNATTENDED]) == 0
    first = _files(tmp_path)
    assert {
        "deploy.toml",
        "noxfile.py",
        "deploy_checks/test_deploy_checks.py",
        ".github/workflows/deploygate.yml",
        ".gitlab-ci.yml",
    } <= set(first)
    capsys.readouterr()
    assert cli.main(["init", "--path", str(tmp_path), *UNATTENDED]) == 0
    assert _files(tmp_path) == first
    assert capsys.readouterr().out.count("unchanged") == 5


def test_an_existing_file_is_kept_unless_forced(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _tree(tmp_path, {**URL_STYLE, "noxfile.py": "# the team's own\n"})
    assert cli.main(["init", "--path", str(tmp_path), *UNATTENDED]) == 1
    assert (tmp_path / "noxfile.py").read_text() == "# the team's own\n"
    assert (tmp_path / "deploy.toml").exists(), "the other files are written"
    assert "kept 1 existing file(s)" in capsys.readouterr().err
    assert cli.main(["init", "--path", str(tmp_path), *UNATTENDED, "--force"]) == 0
    assert "relaying_signals" in (tmp_path / "noxfile.py").read_text()


def test_the_written_deploy_toml_is_what_deploygate_loads(tmp_path: Path) -> None:
    _tree(tmp_path, URL_STYLE)
    argv = [
        "init",
        "--path",
        str(tmp_path),
        *UNATTENDED,
        "--env",
        "ALLOWED_HOSTS=*",
        "--process",
        "worker=python manage.py rqworker",
        "--proxy-port",
        "8091",
        "--window",
        "00:00-24:00",
        "--no-github",
        "--no-gitlab",
    ]
    assert cli.main(argv) == 0
    settings = config.load(tmp_path / "deploy.toml", environ={}, root=tmp_path)
    assert settings.sources["release"] == "deploy.toml"
    assert (settings.project, settings.proxy_port, settings.release, settings.app_port) == (
        "mysite",
        8091,
        "registry.example.com/mysite:1.4",
        8080,
    )
    assert (settings.app_database_url, settings.health_path, settings.traffic_read_paths) == ("DATABASE_URL", "/health/", "/health/")
    assert settings.app_env == {"DJANGO_SETTINGS_MODULE": "mysite.settings", "ALLOWED_HOSTS": "*"}
    assert settings.app_secrets == {"DJANGO_SECRET_KEY": "env:DJANGO_SECRET_KEY"}
    assert settings.app_processes == {"worker": "python manage.py rqworker"}
    assert (settings.app_checks, settings.deploy_window, settings.deploy_timezone) == ("deploy_checks", "00:00-24:00", "UTC")
    assert not (tmp_path / ".github").exists() and not (tmp_path / ".gitlab-ci.yml").exists()
    compile((tmp_path / "deploy_checks" / "test_deploy_checks.py").read_text(), "check", "exec")


class _Session:
    """Just enough of nox.Session: records each run and the SIGTERM handler in force during it."""

    def __init__(self, *posargs: str) -> None:
        self.posargs = list(posargs)
        self.runs: list[tuple[tuple[str, ...], dict, object]] = []

    def run(self, *args: str, **kwargs) -> None:
        self.runs.append((args, kwargs, signal.getsignal(signal.SIGTERM)))


def test_the_written_noxfile_has_the_sessions_and_deploy_and_rollback_relay_stop_signals_and_wait(tmp_path: Path) -> None:
    _tree(tmp_path, URL_STYLE)
    assert cli.main(["init", "--path", str(tmp_path), *UNATTENDED]) == 0
    sessions = runpy.run_path(str(tmp_path / "noxfile.py"))
    for name in ("predeploy", "deploy", "rollback", "abort", "status", "up"):
        assert name in sessions, name
    for name, first in (("deploy", "deploy"), ("rollback", "rollback")):
        session = _Session("--candidate", "x")
        sessions[name](session)
        ((args, kwargs, handler),) = session.runs
        assert args[1:4] == ("-m", "deploygate", first) and args[4:] == ("--candidate", "x")
        assert kwargs["interrupt_timeout"] is None and kwargs["terminate_timeout"] is None
        assert handler is relay, f"{name}: a stop signal must be passed on while deploygate runs"
        assert kwargs["env"]["DEPLOYGATE_CONFIG"] == str(tmp_path / "deploy.toml")
    session = _Session("--candidate", "x", "-k", "backup")
    sessions["predeploy"](session)
    ((args, kwargs, handler),) = session.runs
    assert args[2:] == ("deploygate", "predeploy", "--candidate", "x", "-k", "backup") and handler is not relay
    session = _Session("--config", "other.toml")
    sessions["up"](session)
    assert session.runs[0][0][2:] == ("deploygate", "up", "--config", "other.toml")


def _run_lines(steps: list[dict]) -> list[str]:
    return [step["run"] for step in steps if "run" in step]


def test_the_written_github_workflow_predeploys_pull_requests_and_deploys_main_one_at_a_time(tmp_path: Path) -> None:
    _tree(tmp_path, URL_STYLE)
    assert cli.main(["init", "--path", str(tmp_path), *UNATTENDED, "--branch", "trunk"]) == 0
    workflow = yaml.safe_load((tmp_path / ".github" / "workflows" / "deploygate.yml").read_text())
    triggers = workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` as true
    assert set(triggers) == {"pull_request", "push"} and triggers["push"]["branches"] == ["trunk"]
    assert workflow["env"]["CANDIDATE"].startswith("registry.example.com/mysite:${{")
    predeploy, deploy = workflow["jobs"]["predeploy"], workflow["jobs"]["deploy"]
    assert "pull_request" in predeploy["if"]
    runs = _run_lines(predeploy["steps"])
    assert f"deploygate=={deploygate.__version__}" in runs[0]
    assert 'nox -s predeploy -- --candidate "$CANDIDATE"' in runs
    assert any(line.startswith('deploygate plan --candidate "$CANDIDATE" --format markdown') for line in runs)
    comment = next(step for step in predeploy["steps"] if "pr-comment" in step.get("run", ""))
    assert comment["run"].startswith("deploygate pr-comment --body-file")
    assert "vars.DEPLOYGATE_PLAN_COMMENT != 'off'" in comment["if"], "one variable turns the comment off"
    assert comment["env"] == {"GITHUB_TOKEN": "${{ github.token }}"}, "the workflow's own token, no other"
    assert "refs/heads/trunk" in deploy["if"]
    assert deploy["concurrency"] == {"group": "deploygate-mysite-production", "cancel-in-progress": False}
    assert 'exec nox -s deploy -- --candidate "$CANDIDATE"' in _run_lines(deploy["steps"])
    cleanup = deploy["steps"][-1]
    assert (cleanup["if"], cleanup["run"]) == ("cancelled()", "nox -s rollback -- --if-unfinished")


def test_the_written_gitlab_ci_has_the_same_stages(tmp_path: Path) -> None:
    _tree(tmp_path, URL_STYLE)
    assert cli.main(["init", "--path", str(tmp_path), *UNATTENDED]) == 0
    pipeline = yaml.safe_load((tmp_path / ".gitlab-ci.yml").read_text())
    assert pipeline["stages"] == ["predeploy", "deploy"]
    assert f"deploygate=={deploygate.__version__}" in " ".join(pipeline[".deploygate"]["before_script"])
    assert pipeline["predeploy"]["script"] == ['nox -s predeploy -- --candidate "$CANDIDATE"']
    assert pipeline["predeploy"]["rules"] == [{"if": '$CI_PIPELINE_SOURCE == "merge_request_event"'}]
    assert any(line.startswith("deploygate plan --candidate") for line in pipeline["predeploy"]["after_script"])
    deploy = pipeline["deploy"]
    assert deploy["script"] == ['exec nox -s deploy -- --candidate "$CANDIDATE"'] and deploy["resource_group"] == "mysite-production"
    assert deploy["after_script"][-1] == "nox -s rollback -- --if-unfinished"


def test_the_action_and_the_gitlab_template_install_this_version_and_run_the_session() -> None:
    action = yaml.safe_load((ROOT / "action.yml").read_text())
    assert action["runs"]["using"] == "composite"
    assert set(action["inputs"]) >= {"session", "candidate", "config", "comment"}
    assert action["inputs"]["version"]["default"] == deploygate.__version__
    steps = action["runs"]["steps"]
    assert 'pip" install --quiet "deploygate==${{ inputs.version }}"' in steps[0]["run"]
    assert 'exec nox -s "$SESSION" -- "$@" $ARGS' in steps[1]["run"]
    assert steps[1]["env"]["DEPLOYGATE_CONFIG"] == "${{ inputs.config }}"
    assert steps[2]["run"].startswith('deploygate plan --candidate "$CANDIDATE" --format markdown')
    assert steps[3]["run"].startswith("deploygate pr-comment --body-file") and "inputs.comment == 'true'" in steps[3]["if"]
    template = yaml.safe_load((ROOT / "ci" / "gitlab" / "deploygate.yml").read_text())
    assert template["variables"]["DEPLOYGATE_VERSION"] == deploygate.__version__
    assert 'exec nox -s "$DEPLOYGATE_SESSION" -- "$@" $DEPLOYGATE_ARGS' in template[".deploygate"]["script"]
    assert template[".deploygate-deploy"]["resource_group"] == "production"
    assert template[".deploygate-deploy"]["after_script"][-1] == "nox -s rollback -- --if-unfinished"


def test_predeploy_hands_pytest_its_arguments_and_the_settings_by_their_gate_spelling(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    seen: list[list[str]] = []
    monkeypatch.setattr(subprocess, "run", lambda argv, **_: seen.append(argv) or subprocess.CompletedProcess(argv, 3))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "d.toml").write_text('[stack]\nproject = "x"\n')
    argv = [
        "predeploy",
        "--candidate",
        "shop:2",
        "-k",
        "backup",
        "--co",
        "--config",
        "d.toml",
        "--set",
        "proxy_port=9",
        "tests_pre/test_backup.py::test_backup_restores",
    ]
    assert cli.main(argv) == 3, "pytest's exit status is the command's"
    (pytest_argv,) = seen
    assert ["--candidate=shop:2", "-k", "backup", "--co"] == pytest_argv[-4:], "the request's flags first, then pytest's as given"
    assert "--dg-config=d.toml" in pytest_argv and "--dg-set=proxy_port=9" in pytest_argv
    assert str(ROOT / "tests_pre" / "test_backup.py") + "::test_backup_restores" in pytest_argv
    assert str(ROOT / "tests_pre") not in pytest_argv, "a test id replaces the whole suite"
    assert pytest_argv[pytest_argv.index("-c") + 1] == str(ROOT / "pytest.ini")
    with pytest.raises(SystemExit):
        cli.main(["status", "-k", "backup"])  # only predeploy passes unknown arguments on
