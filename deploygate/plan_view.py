"""The reviewer's plan: what the predeploy gate recorded, as one markdown body (or JSON) for a pull request.

Pure: a ``GateResult`` in (its checks and the ``details`` ``plan_facts`` wrote), text out.
The body goes to a public pull request, so every string passes ``scrub`` first: values
under a key naming a password are replaced as the deploy report does, and the secrets
the caller knows (the database password, the app's secrets) are replaced wherever they
appear.

The plan's verdict is the change's: the checks of what the candidate does (rehearsal,
reversal, compatibility, the app's own checks). Production's health, the deploy policy
and the backup judge the moment of a deploy, not the pull request; their failures are
shown as what would also stop a deploy now.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from deploygate import markdown
from deploygate.gate_result import FAILED, PASSED, CheckResult, GateResult
from deploygate.plan_facts import COMPAT, REHEARSAL, REVERSAL

CHANGE_CATEGORIES = ("rehearsal", "reversal", "compat", "cache", "replay", "app")
REDACTED = "[redacted]"  # the deploy report's word (deploygate.report.REDACTED), not imported: the report pulls in its chart
SQL_LINES_SHOWN = 60  # per migration; a data migration's SQL can run to thousands of lines
SHOWN = 3  # fields named per cause of failure, the rest counted (as compat.SHOWN)
MARKS = {True: "✅", False: "❌", None: "⚠️"}
VERDICT_WORDS = {True: "passes", False: "fails"}


def scrub(value: Any, secrets: Iterable[str] = ()) -> Any:
    """A deep copy of ``value``: values under a key containing "password" redacted, every secret replaced by ***."""
    secrets = [s for s in secrets if s]
    if isinstance(value, dict):
        return {k: REDACTED if "password" in str(k).lower() else scrub(v, secrets) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [scrub(v, secrets) for v in value]
    if isinstance(value, str):
        for secret in secrets:
            value = value.replace(secret, "***")
    return value


def _check(check: CheckResult) -> dict[str, Any]:
    # A check's assert already says what failed: the exception's name adds nothing for a reviewer.
    why = check.summary.removeprefix("AssertionError: ")
    return {
        "name": check.name,
        "category": check.category,
        "outcome": check.outcome,
        "value": check.value,
        "threshold": check.threshold,
        "why": why,
    }


def statements(sql: list[str]) -> list[str]:
    """The SQL that runs: Django's ``--`` comment lines (one per operation) left out."""
    return [s for s in sql if s.strip() and not s.strip().startswith("--")]


def build(result: GateResult, *, reused: bool = False, secrets: Iterable[str] = ()) -> dict[str, Any]:
    """The plan as data (what ``--format json`` prints and the markdown shows), secrets scrubbed."""
    details = result.details or {}
    change = [c for c in result.checks if c.category in CHANGE_CATEGORIES]
    # No rehearsal recorded (the backup failed, or a result from before plans) proves nothing about the change.
    passes = bool(change) and REHEARSAL in details and not any(c.failed for c in change)
    compat = details.get(COMPAT) or {}
    failed_compat = [c for c in change if c.category == "compat" and c.failed]
    fix = list(compat.get("advice") or []) if failed_compat else []
    if compat.get("migration_failure") and "; fix: " in compat["migration_failure"]:
        fix.append(compat["migration_failure"].split("; fix: ", 1)[1])
    reversal_checks = [c for c in result.checks if c.category == "reversal"]
    view = {
        # (Not production's identity: the cluster's system identifier is nobody's business on a public pull request.)
        "candidate": result.candidate or {},
        "gate_finished": result.finished,
        "gate_result_reused": reused,
        "verdict": VERDICT_WORDS[passes],
        "passes": passes,
        "failed": [_check(c) for c in change if c.failed],
        "fix": fix,
        "rehearsal": details.get(REHEARSAL),
        "compat": compat or None,
        "reversal": {**(details.get(REVERSAL) or {}), "checks": [_check(c) for c in reversal_checks]},
        "app_checks": [_check(c) for c in result.checks if c.category == "app"],
        "deploy_now": [_check(c) for c in result.checks if c.category not in CHANGE_CATEGORIES],
        "overrides": dict(result.overrides),
        "notes": list(result.notes),
    }
    return scrub(view, secrets)


def render_json(view: dict[str, Any]) -> str:
    return json.dumps(view, indent=2, sort_keys=True) + "\n"


# -- markdown -------------------------------------------------------------------------------------


def _cell(value: Any) -> str:
    """One line, pipes escaped: safe inside a table cell."""
    text = "" if value is None else str(value)
    return " ".join(text.split()).replace("|", "\\|") or "—"


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    return markdown.table(header, rows, _cell) + [""]


def _code(text: Any) -> str:
    return f"`{text}`" if text else "—"


def _seconds(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f} s" if value < 1 else f"{value:.1f} s"


def _rows(value: int | None) -> str:
    return "—" if value is None else f"{value:,}"


def render_markdown(view: dict[str, Any]) -> str:
    """The plan's markdown: verdict and fix first, then migrations, locks, compatibility, reversal, the app's checks."""
    candidate = view["candidate"]
    name = candidate.get("ref") or "the candidate"
    out = [f"## deploygate plan: `{name}` {MARKS[view['passes']]} {view['verdict']}", ""]
    image = f"`{candidate.get('tag')}` ({str(candidate.get('image_id') or '')[:19]})" if candidate.get("tag") else "—"
    how = "a gate result of this image on this production, reused" if view["gate_result_reused"] else "the predeploy gate, run now"
    out += [f"Image {image}, rehearsed on a copy of production restored from its backup; from {how} ({view['gate_finished']}).", ""]
    out += _verdict(view)
    out += _migrations(view.get("rehearsal"))
    out += _compat(view.get("compat"))
    out += _reversal(view)
    out += _app_checks(view["app_checks"])
    out += _deploy_now(view["deploy_now"], view["overrides"])
    return "\n".join(out).rstrip() + "\n"


def _verdict(view: dict[str, Any]) -> list[str]:
    if view["passes"]:
        out = [
            "**Verdict: the change passes.** Old and new code work on either schema; the plan applies and reverses on production's data.",
            "",
        ]
    else:
        out = ["**Verdict: the change fails.**", ""]
        out += [f"- {MARKS[False]} `{c['name']}`: {_cell(c['why'] or c['outcome'])}" for c in view["failed"]]
        if not view["failed"]:
            out.append("- no rehearsal was recorded: the gate stopped before it (see production today below)")
        out.append("")
    if view["fix"]:
        out += ["**Fix:**", ""] + [f"- {_cell(line)}" for line in view["fix"]] + [""]
    return out


def _migrations(rehearsal: dict[str, Any] | None) -> list[str]:
    out = ["### Migrations not yet applied in production", ""]
    if not rehearsal:
        return out + ["Not rehearsed.", ""]
    migrations = rehearsal["migrations"]
    if not migrations:
        return out + ["None: production already has every migration of the candidate.", ""]
    rows = [
        [
            _code(m["label"]),
            MARKS[m["applied"]] + (f" {m['error']}" if m["error"] else ""),
            _seconds(m["duration_s"]),
            "yes" if m["reversible"] else "**no**",
            len(statements(m["sql"])),
        ]
        for m in migrations
    ]
    out += _table(["Migration", "Applied on the copy", "Duration", "Reversible", "SQL statements"], rows)
    locks = [
        [_code(m["label"]), _code(lock["table"]), _rows(lock["rows"]), lock["mode"], f"{lock['held_ms']:g} ms"]
        for m in migrations
        for lock in m["locks"]
    ]
    if locks:
        out += ["Strongest lock per table, held on the production-size copy:", ""]
        out += _table(["Migration", "Table", "Rows", "Strongest lock", "Held"], locks)
    else:
        out += ["No table of the app was locked (only Django's own record of applied migrations).", ""]
    rewritten = rehearsal.get("tables_rewritten") or []
    out += [
        f"Duration on the copy: {_seconds(rehearsal['duration_s'])} in all, with the deploy's lock_timeout "
        f"{rehearsal['lock_timeout_ms']} ms. Tables rewritten (every row copied): "
        + (", ".join(_code(t) for t in rewritten) if rewritten else "none")
        + ".",
        "",
    ]
    if rehearsal.get("migrate_error"):
        out += [f"{MARKS[False]} The plan failed on the copy: {_cell(rehearsal['migrate_error'])}", ""]
    for m in migrations:
        out += [f"#### `{m['label']}`", ""]
        out += [f"- {_cell(op)}" for op in m["operations"]] + [""]
        sql = [s for s in m["sql"] if s.strip()]
        if not statements(sql):
            out += ["No SQL: a state-only or Python-only change.", ""]
            continue
        text = "\n".join(sql[:SQL_LINES_SHOWN])
        if len(sql) > SQL_LINES_SHOWN:
            text += f"\n-- ... {len(sql) - SQL_LINES_SHOWN} more statements"
        fence = markdown.fence(text)
        out += [f"{fence}sql", text, fence, ""]
    return out


def _compat(compat: dict[str, Any] | None) -> list[str]:
    out = ["### Old and new code on each other's schema", ""]
    if not compat:
        return out + ["Not judged.", ""]
    if compat.get("migration_failure"):
        out += [f"{MARKS[False]} The migration cannot run on production's data: {_cell(compat['migration_failure'])}", ""]
    rows, failures = [], []
    for direction in compat["directions"]:
        items = direction["items"]
        if not direction["judged"]:
            rows.append([direction["direction"], f"{MARKS[None]} not judged: no migrated schema"])
            continue
        # One row per root cause (compat.Finding); a result recorded before causes were, one per failure.
        findings = direction.get("findings") or [_finding_of(item) for item in items]
        rows.append([direction["direction"], f"{MARKS[not items]} " + (_failing(len(items), len(findings)) if items else "works")])
        for finding in findings:
            models = ", ".join(_code(m) for m in finding["models"])
            what = [_fields(finding), ", ".join(finding["operations"]), _values(finding), finding["error"]]
            failures.append([direction["direction"], models, *what])
    out += _table(["Direction", "Result"], rows)
    if failures:
        out += _table(["Direction", "Model", "Field", "Operations", "Value class", "The database says"], failures)
        out += ['Or deploy behind a maintenance hold: `--accept-incompatible --reason "..."`.', ""]
    if compat.get("unchecked"):
        out += ["<details><summary>Not checked (never a failure)</summary>", ""]
        out += [f"- {_cell(line)}" for line in compat["unchecked"]] + ["", "</details>", ""]
    return out


def _finding_of(item: dict[str, Any]) -> dict[str, Any]:
    """A failure recorded without its cause's grouping, as a cause of its own (the shape of ``compat.Finding.facts``)."""
    values = list(item.get("values") or [])
    return {
        "error": item.get("error"),
        "count": 1,
        "models": [item.get("model")],
        "fields": [item.get("field")],
        "operations": list(item.get("operations") or []),
        "values": values,
        "fresh_values": not values,
        "whole_tables": [] if item.get("field") else [item.get("table")],
    }


def _failing(failures: int, causes: int) -> str:
    return f"{failures} failing" if failures == causes else f"{failures} failing, {causes} cause{'s' if causes > 1 else ''}"


def _first(names: list[str], shown: int) -> str:
    more = len(names) - shown
    return ", ".join(names[:shown]) + (f" and {more} more" if more > 0 else "")


def _fields(finding: dict[str, Any]) -> str:
    """The fields a cause breaks, the table first when a write of the whole row broke too."""
    names = [f"table {_code(table)}" for table in finding.get("whole_tables") or []]
    names += [_code(name) for name in dict.fromkeys(finding["fields"]) if name]
    return _first(names, SHOWN)


def _values(finding: dict[str, Any]) -> str:
    names = (["fresh values"] if finding.get("fresh_values") else []) + list(finding["values"])
    return _first(names, SHOWN + 1)


def _reversal(view: dict[str, Any]) -> list[str]:
    out = ["### Reversibility", ""]
    reversal, rehearsal = view["reversal"], view.get("rehearsal") or {}
    irreversible = [m["label"] for m in rehearsal.get("migrations", []) if not m["reversible"]]
    if irreversible:
        out.append(
            f"{MARKS[False]} No reverse operation: {', '.join(_code(label) for label in irreversible)} "
            "(a rollback restores the backup instead)."
        )
    checks = reversal.get("checks") or []
    if not checks:
        return out + ["Reversal not rehearsed.", ""]
    for check in checks:
        proven = check["outcome"] == PASSED
        took = f" in {_seconds(reversal.get('duration_s'))}" if reversal.get("duration_s") is not None else ""
        what = (
            f"reversed on the copy{took}: content identical to production's"
            if proven
            else f"reversal on the copy: {_cell(check['why'] or check['outcome'])}"
        )
        out.append(f"{MARKS[proven if check['outcome'] in (PASSED, FAILED) else None]} {what}")
    return out + [""]


def _app_checks(checks: list[dict[str, Any]]) -> list[str]:
    out = ["### The app's own checks (in the candidate's image, on the migrated copy)", ""]
    if not checks:
        return out + ["None ran.", ""]
    rows = [
        [_code(c["name"].removeprefix("test_app_check[").removesuffix("]")), f"{_mark(c)} {c['outcome']}", c["value"], c["why"]]
        for c in checks
    ]
    return out + _table(["Check", "Verdict", "Measured", "Why"], rows)


def _mark(check: dict[str, Any]) -> str:
    return MARKS[True] if check["outcome"] == PASSED else MARKS[False] if check["outcome"] in (FAILED, "error") else MARKS[None]


def _deploy_now(checks: list[dict[str, Any]], overrides: dict[str, str]) -> list[str]:
    """Production's health, the policy and the backup: a deploy's moment, not the change's verdict."""
    if not checks:
        return []
    failing = [c for c in checks if c["outcome"] in (FAILED, "error")]
    summary = f"{MARKS[False]} {len(failing)} would stop a deploy right now" if failing else f"{MARKS[True]} a deploy could start now"
    out = [f"<details><summary>Production today (health, policy, backup): {summary}</summary>", ""]
    rows = [[_code(c["name"]), f"{_mark(c)} {c['outcome']}", c["value"], c["threshold"], c["why"]] for c in checks]
    out += _table(["Check", "Verdict", "Measured", "Limit", "Why"], rows)
    out += [f"- override {_code(name)}: {_cell(reason)}" for name, reason in overrides.items()]
    return out + ["</details>", ""]
