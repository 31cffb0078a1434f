"""Configuration precedence and validation (pure logic, no engine)."""

from __future__ import annotations

from pathlib import Path

import pytest

from deploygate import config, resolved_settings
from deploygate.errors import ConfigError


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "deploy.toml"
    path.write_text(text)
    return path


def test_defaults_apply_without_file(tmp_path: Path) -> None:
    settings = config.load(root=tmp_path, environ={})
    assert settings.proxy_port == 8080
    assert settings.sources["proxy_port"] == "default"
    assert settings.config_file is None


def test_command_line_beats_env_beats_file(tmp_path: Path) -> None:
    _write(tmp_path, "[stack]\nproxy_port = 9000\nproject = 'fromfile'\n[app]\nrelease = 'v9'\n")
    settings = config.load(
        root=tmp_path,
        environ={"DEPLOYGATE_PROXY_PORT": "9100", "DEPLOYGATE_PROJECT": "fromenv"},
        overrides={"proxy_port": "9200"},
    )
    assert (settings.proxy_port, settings.sources["proxy_port"]) == (9200, "command line")
    assert (settings.project, settings.sources["project"]) == ("fromenv", "env")
    assert (settings.release, settings.sources["release"]) == ("v9", "deploy.toml")


def test_bad_values_name_option_and_source(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"proxy_port from env DEPLOYGATE_PROXY_PORT"):
        config.load(root=tmp_path, environ={"DEPLOYGATE_PROXY_PORT": "eighty"})
    _write(tmp_path, "[stack]\nproxy_port = 'x'\n")
    with pytest.raises(ConfigError, match=r"proxy_port from deploy.toml"):
        config.load(root=tmp_path, environ={})


def test_unknown_key_in_file_is_rejected(tmp_path: Path) -> None:
    _write(tmp_path, "[stack]\nproxy_prot = 8080\n")
    with pytest.raises(ConfigError, match="unknown setting.*stack.proxy_prot"):
        config.load(root=tmp_path, environ={})


def test_choices_are_enforced(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="image_source.*not one of"):
        config.load(root=tmp_path, environ={}, overrides={"image_source": "sometimes"})


def test_explicit_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        config.load(tmp_path / "nope.toml", root=tmp_path, environ={})


def test_describe_hides_secrets(tmp_path: Path) -> None:
    settings = config.load(root=tmp_path, environ={"DEPLOYGATE_DB_PASSWORD": "hunter2-secret"})
    text = "\n".join(settings.describe())
    assert "hunter2-secret" not in text
    assert "db_password: *** (from env)" in text


def test_parse_assignments() -> None:
    assert config.parse_assignments(["proxy_port=1", "project=a=b"]) == {"proxy_port": "1", "project": "a=b"}
    with pytest.raises(ConfigError):
        config.parse_assignments(["novalue"])


def test_repository_deploy_toml_is_valid() -> None:
    root = Path(__file__).resolve().parents[2]
    settings = config.load(root=root, environ={})
    assert settings.sources["project"] == "deploy.toml"


def test_replace_keeps_the_rest_and_names_the_source(tmp_path: Path) -> None:
    settings = config.load(root=tmp_path, environ={}).replace(proxy_port=9999)
    assert (settings.proxy_port, settings.sources["proxy_port"]) == (9999, "override")
    assert settings.project == "app"
    with pytest.raises(ConfigError):
        settings.replace(nope=1)


def test_networks_and_extra_hosts_from_file_env_and_command_line(tmp_path: Path) -> None:
    _write(tmp_path, '[app]\nnetworks = ["team_net"]\n[app.extra_hosts]\n"redis.internal" = "10.0.0.5"\n')
    settings = config.load(root=tmp_path, environ={})
    assert settings.app_networks == ("team_net",)
    assert settings.app_extra_hosts == {"redis.internal": "10.0.0.5"}
    # Env and --set take a JSON array or comma-separated names; what the gates forward (as_text) reads back the same.
    assert config.load(root=tmp_path, environ={"DEPLOYGATE_APP_NETWORKS": "a, b"}).app_networks == ("a", "b")
    forwarded = config.as_text(settings.app_networks)
    assert config.load(root=tmp_path, environ={}, overrides={"app_networks": forwarded}).app_networks == ("team_net",)
    assert config.load(root=tmp_path, environ={"DEPLOYGATE_APP_EXTRA_HOSTS": '{"db.team": "10.0.0.6"}'}).app_extra_hosts == {
        "db.team": "10.0.0.6"
    }


def test_networks_must_be_a_list_of_names(tmp_path: Path) -> None:
    _write(tmp_path, "[app]\nnetworks = [1]\n")
    with pytest.raises(ConfigError, match=r"app_networks from deploy.toml: expected a list of strings"):
        config.load(root=tmp_path, environ={})
    with pytest.raises(ConfigError, match=r"app_networks from env"):
        config.load(root=tmp_path, environ={"DEPLOYGATE_APP_NETWORKS": "[1, 2]"}, overrides={})


def test_each_option_is_a_typed_attribute_of_settings_declared_once(tmp_path: Path) -> None:
    assert len(config.OPTIONS) == len({opt.name for opt in config.OPTIONS}) == len({opt.toml for opt in config.OPTIONS})
    assert all(getattr(config.Settings, opt.name) is opt for opt in config.OPTIONS)
    settings = config.load(root=tmp_path, environ={"DEPLOYGATE_PROXY_PORT": "9001", "DEPLOYGATE_APP_NETWORKS": "a,b"})
    assert settings.proxy_port == 9001 and isinstance(settings.proxy_port, int)
    assert settings.app_networks == ("a", "b")
    for opt in config.OPTIONS:
        assert isinstance(getattr(settings, opt.name), type(opt.default)), opt.name
    with pytest.raises(AttributeError):
        settings.proxy_prot  # noqa: B018 - a typo is an error, not a silent Any


def test_resolved_settings_file_keeps_values_and_sources_but_no_secret(tmp_path: Path) -> None:
    _write(tmp_path, "[stack]\nproxy_port = 9000\n[database]\npassword = 'from-the-file'\n")
    environ = {"DEPLOYGATE_PROJECT": "fromenv", "DEPLOYGATE_DB_PASSWORD": "hunter2-secret"}
    settings = config.load(root=tmp_path, environ=environ).replace(app_networks=("team",), app_env={"A": "1"})
    path = resolved_settings.write_resolved(settings, tmp_path / "logs" / "deploy_settings.json")
    assert path.stat().st_mode & 0o777 == 0o600
    assert "hunter2-secret" not in path.read_text() and "from-the-file" not in path.read_text()
    # The gate has the deploy's environment; the secret is resolved there, everything else is the file's.
    again = resolved_settings.load_resolved(path, environ=environ, overrides={"seed_rows": "7"})
    assert (again.proxy_port, again.sources["proxy_port"]) == (9000, "deploy.toml")
    assert (again.project, again.sources["project"]) == ("fromenv", "env")
    assert (again.app_networks, again.sources["app_networks"]) == (("team",), "override")
    assert (again.seed_rows, again.sources["seed_rows"]) == (7, "command line")
    assert (again.db_password, again.sources["db_password"]) == ("hunter2-secret", "env")
    assert resolved_settings.load_resolved(path, environ={}).db_password == "from-the-file"
    assert again.config_file == tmp_path / "deploy.toml" and again.root == tmp_path
    assert {line for line in again.describe() if not line.startswith("seed_rows")} == {
        line for line in settings.describe() if not line.startswith("seed_rows")
    }


def test_a_missing_resolved_settings_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the settings file"):
        resolved_settings.load_resolved(tmp_path / "nope.json", environ={})
