"""The request's flags are declared once (deploygate.request_flags) for the CLI and the gate's pytest alike."""

from __future__ import annotations

import runpy
from pathlib import Path

import nox.registry
import pytest
from _pytest.config.argparsing import Parser

from deploygate import cli, config, request_flags, resolved_settings
from deploygate.deploy import gates
from fixtures import config as config_fixtures

ROOT = Path(__file__).resolve().parents[2]


def _gate_parser() -> Parser:
    parser = Parser(_ispytest=True)  # pytest's own parser, as conftest hooks get it (no public constructor)
    config_fixtures.pytest_addoption(parser)
    return parser


def test_the_gates_pytest_takes_every_flag_predeploy_hands_it() -> None:
    given = {
        request_flags.CONFIG: "d.toml",
        request_flags.SET: ["a=1", "b=2"],
        request_flags.CANDIDATE: "-odd:1",
        request_flags.SKIP_CHECK: ["x"],
        request_flags.OVERRIDE: ["deploy_window"],
        request_flags.REASON: "why",
    }
    assert set(given) == set(request_flags.PREDEPLOY)
    argv = [arg for flag, value in given.items() for arg in flag.gate_args(value)]
    parsed = _gate_parser().parse(argv)
    assert (parsed.dg_config, parsed.dg_set, parsed.candidate) == ("d.toml", ["a=1", "b=2"], "-odd:1")
    assert (parsed.skip_check, parsed.override, parsed.reason) == (["x"], ["deploy_window"], "why")


def test_the_cli_declares_the_same_flags_with_their_command_line_names() -> None:
    args, unknown = cli.build_parser().parse_known_args(
        ["predeploy", "--config", "d.toml", "--set", "a=1", "--candidate", "v2", "--skip-check", "x", "--reason", "why", "-x"]
    )
    seen = (args.config, args.set_after, args.candidate, args.skip_check, args.reason, unknown)
    assert seen == ("d.toml", ["a=1"], "v2", ["x"], "why", ["-x"])
    deploy = cli.build_parser().parse_args(["deploy", "--candidate", "v2", "--skip-check", "x", "--reason", "why"])
    assert (deploy.candidate, deploy.skip_check, deploy.reason) == ("v2", ["x"], "why")


def test_a_deploys_gate_gets_one_settings_file_not_a_flag_per_setting(tmp_path: Path) -> None:
    settings = config.load(root=tmp_path, environ={"DEPLOYGATE_DB_PASSWORD": "hunter2-secret"}, overrides={"proxy_port": "9"})
    argv = gates.settings_args(settings, tmp_path / "logs" / "deploy_settings.json")
    assert argv == [f"--dg-settings={tmp_path / 'logs' / 'deploy_settings.json'}"]
    parsed = _gate_parser().parse(argv)
    read = resolved_settings.load_resolved(parsed.dg_settings, environ={})
    assert (read.proxy_port, read.sources["proxy_port"]) == (9, "command line")
    assert "hunter2-secret" not in (tmp_path / "logs" / "deploy_settings.json").read_text()


class _Session:
    def __init__(self, *posargs: str) -> None:
        self.posargs = list(posargs)
        self.runs: list[tuple[str, ...]] = []

    def run(self, *args: str, **kwargs) -> None:
        self.runs.append(args)

    def log(self, message: str) -> None:
        pass


def test_the_repositorys_predeploy_session_runs_deploygate_predeploy_as_a_teams_noxfile_does(monkeypatch: pytest.MonkeyPatch) -> None:
    nox.registry.reset()  # sessions other tests' noxfiles registered (nox keeps one registry per process)
    sessions = runpy.run_path(str(ROOT / "noxfile.py"))
    nox.registry.reset()
    monkeypatch.setitem(sessions["_shared_env"].__globals__, "_missing_requirements", lambda: [])
    session = _Session("--candidate", "v2-safe", "--config", "shop.toml", "-k", "backup", "tests_pre/test_backup.py")
    sessions["predeploy"](session)
    engine, gate = session.runs
    assert engine[1:] == ("-m", "deploygate", "engine")
    assert gate[1:4] == ("-m", "deploygate", "predeploy")
    assert gate[4:] == ("--candidate", "v2-safe", "--config", "shop.toml", "-k", "backup", "tests_pre/test_backup.py")
