"""Responses compared with the baseline's, noise learned from two baseline runs (deploygate.replay_compare)."""

from __future__ import annotations

import json

from deploygate.replay_compare import Answer, Noise, compare, differences, learn_noise, shape_of, size_band


def _json(value) -> object:
    return shape_of("application/json; charset=utf-8", json.dumps(value).encode())


def test_a_json_body_is_its_keys_and_value_types_and_a_list_its_elements_merged() -> None:
    shape = _json({"id": 1, "member": None, "links": [{"id": 1, "email": None}, {"id": 2, "email": "a@b.c"}]})
    assert shape == {"json": {"id": "number", "member": "null", "links": [{"id": "number", "email": "str"}]}}
    assert _json({"lag": 0}) == _json({"lag": 0.5}) and _json({"ok": True}) != _json({"ok": 1})


def test_other_bodies_are_their_type_and_size_band() -> None:
    assert shape_of("text/html", b"x" * 100) == {"type": "text/html", "size": "<512"}
    assert shape_of("", b"") == {"type": "none", "size": "0"}
    assert [size_band(n) for n in (1, 63, 64, 511, 512, 5000)] == ["<64", "<64", "<512", "<512", "<4096", "<32768"]


def test_a_missing_key_and_a_changed_type_differ_and_an_added_key_or_a_null_does_not() -> None:
    before = _json({"id": 1, "member": {"id": 2}, "email": "a"})
    assert differences(before, _json({"id": 1, "member": {"id": 2}, "email": "a", "new": 1})) == []
    assert differences(before, _json({"id": 1, "member": None, "email": "a"})) == []
    assert differences(before, _json({"id": "1", "email": "a"})) == ["$.json.id: number -> str", "$.json.member missing"]


def test_noise_is_what_two_baseline_runs_disagree_on_and_is_never_held_against_a_release() -> None:
    first = [Answer(200, _json({"id": 1, "token": "a"})), Answer(200, _json({})), Answer(201, _json({"id": 3}))]
    second = [Answer(200, _json({"id": 1, "token": 5})), Answer(503, _json({})), Answer(201, _json({"id": 3}))]
    noise = learn_noise(first, second)
    assert noise.requests == {1} and noise.paths == {0: frozenset({"$.json.token"})}
    run = [
        Answer(200, _json({"id": 1, "token": None})),
        Answer(500, _json({})),
        Answer(500, _json({}), app_error="KeyError at views.py in page"),
    ]
    found, ignored = compare(["GET /a/", "GET /b/", "POST /c/"], first, run, noise)
    assert ignored == 1
    assert [d.describe() for d in found] == ["POST /c/: 201 -> 500 (KeyError at views.py in page)"]


def test_no_answer_is_a_difference_named_by_its_error() -> None:
    found, _ = compare(["GET /"], [Answer(200, _json({}))], [Answer(0, None, error="ConnectionError")], Noise())
    assert found[0].describe() == "GET /: 200 -> no answer (ConnectionError)"
