"""One setting's declaration: its type, default, place in deploy.toml, env name, help, secrecy and parser.

An ``Option`` is a typed descriptor: declared as a class attribute of ``config.Settings``
(``proxy_port = integer("stack.proxy_port", 8080, "...")``), it reads the resolved value
of its instance, so ``settings.proxy_port`` is an ``int`` to the reader and to a type
checker alike. The declaration is the only list of settings: loading, the pytest header,
``deploygate settings`` and the README's table all iterate over it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any, Generic, Protocol, TypeVar, cast, overload

T = TypeVar("T")


class HasValues(Protocol):
    """What an option reads its value from (``config.Settings``)."""

    @property
    def values(self) -> Any: ...


class Option(Generic[T]):
    """One setting; its attribute name on Settings is its flat name (``--set NAME=...``, env ``DEPLOYGATE_NAME``)."""

    name: str

    def __init__(
        self,
        toml: str,
        default: T,
        help: str,
        parse: Callable[[str], T],
        *,
        choices: tuple[str, ...] = (),
        secret: bool = False,
        fields: Mapping[str, type] | None = None,
    ) -> None:
        self.fields = fields  # a list of tables: each table's keys and their types
        self.toml = toml
        self.default = default
        self.help = help
        self.parse = parse
        self.choices = choices
        self.secret = secret

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @property
    def env(self) -> str:
        return "DEPLOYGATE_" + self.name.upper()

    @overload
    def __get__(self, instance: None, owner: type | None = None) -> Option[T]: ...
    @overload
    def __get__(self, instance: HasValues, owner: type | None = None) -> T: ...
    def __get__(self, instance: HasValues | None, owner: type | None = None) -> Option[T] | T:
        if instance is None:
            return self
        return instance.values[self.name]

    def coerce(self, raw: Any) -> T:
        """A value from deploy.toml (typed already) or from the command line and env (text); raises ValueError."""
        value: Any
        if self.fields is not None:
            value = self.parse(raw) if isinstance(raw, str) else raw
            value = tuple(_record(item, self.fields) for item in (value if isinstance(value, (list, tuple)) else [value]))
        elif isinstance(self.default, tuple):
            value = self.parse(raw) if isinstance(raw, str) else raw
            if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
                raise ValueError(f"expected a list of strings, got {raw!r}")
            value = tuple(value)
        elif isinstance(self.default, dict):
            value = self.parse(raw) if isinstance(raw, str) else raw
            if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
                raise ValueError(f"expected a table of strings, got {raw!r}")
        elif isinstance(raw, str) and not isinstance(self.default, str):
            value = self.parse(raw)
        elif isinstance(self.default, bool) != isinstance(raw, bool) or not isinstance(raw, type(self.default)):
            raise ValueError(f"expected {type(self.default).__name__}, got {raw!r}")
        else:
            value = raw
        if self.choices and value not in self.choices:
            raise ValueError(f"{value!r} is not one of {', '.join(self.choices)}")
        return cast(T, value)  # checked against the default's type above


def _record(item: Any, fields: Mapping[str, type]) -> dict[str, Any]:
    """One table of a list of tables, its keys known and typed; the first field is required."""
    if not isinstance(item, dict):
        raise ValueError(f"expected a list of tables, got {item!r}")
    unknown = sorted(set(item) - set(fields))
    if unknown:
        raise ValueError(f"unknown key(s) {', '.join(unknown)} (known: {', '.join(fields)})")
    required = next(iter(fields))
    if required not in item:
        raise ValueError(f"every table needs {required!r}, got {item!r}")
    for key, value in item.items():
        kind = fields[key]
        if isinstance(value, bool) or not isinstance(value, kind):
            raise ValueError(f"{key} expects {kind.__name__}, got {value!r}")
    return dict(item)


def _json(text: str, kind: type, expected: str) -> Any:
    """``text`` parsed as JSON of ``kind``, or a ValueError saying what was ``expected``."""
    try:
        value = json.loads(text)
    except ValueError:
        raise ValueError(f"expected {expected}, got {text!r}") from None
    if not isinstance(value, kind):
        raise ValueError(f"expected {expected}, got {text!r}")
    return value


def parse_records(text: str) -> list[Any]:
    """A list of tables given on the command line or in the environment: a JSON array of objects."""
    return _json(text, list, "a JSON array of objects")


def parse_int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"expected an integer, got {text!r}") from None


def parse_table(text: str) -> dict[str, str]:
    """A table given on the command line or in the environment: a JSON object of strings."""
    return _json(text, dict, "a JSON object of strings")


def parse_names(text: str) -> tuple[str, ...]:
    """A list given on the command line or in the environment: a JSON array, or comma-separated names."""
    if text.strip().startswith("["):
        try:
            value = json.loads(text)
        except ValueError:
            raise ValueError(f"expected a JSON array of strings, got {text!r}") from None
        return tuple(value) if isinstance(value, list) else value
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _same(text: str) -> str:
    return text


# The kinds of settings there are; each fixes the type, and with it the parser of text values.


def text(toml: str, default: str, help: str, *, choices: tuple[str, ...] = (), secret: bool = False) -> Option[str]:
    return Option(toml, default, help, _same, choices=choices, secret=secret)


def integer(toml: str, default: int, help: str) -> Option[int]:
    return Option(toml, default, help, parse_int)


def table(toml: str, help: str) -> Option[dict[str, str]]:
    """A whole TOML table of strings (``[app.env]``); ``{}`` by default."""
    return Option(toml, {}, help, parse_table)


def names(toml: str, help: str, default: tuple[str, ...] = ()) -> Option[tuple[str, ...]]:
    """A TOML array of strings (comma-separated in the environment); ``[]`` unless ``default`` says otherwise."""
    return Option(toml, default, help, parse_names)


def records(toml: str, help: str, fields: Mapping[str, type]) -> Option[tuple[dict[str, Any], ...]]:
    """A TOML array of tables (``[[database.replicas]]``) with the keys of ``fields``, the first required; ``[]`` by default."""
    return Option(toml, (), help, parse_records, fields=fields)


def as_text(value: Any) -> str:
    """A setting as it is written on a command line (``--set name=<this>``): tables and lists as JSON."""
    if isinstance(value, (list, tuple)):
        return json.dumps(list(value))
    return json.dumps(value, sort_keys=True) if isinstance(value, dict) else str(value)
