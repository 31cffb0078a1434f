"""The reviewer's plan rendered from a canned gate result, and the facts the gate records for it."""

from __future__ import annotations

import datetime as dt
import json
from types import SimpleNamespace

from deploygate import plan_facts, plan_view
from deploygate.compat import CANDIDATE_ON_OLD, PRODUCTION_ON_NEW, Incompatibility, Verdict
from deploygate.fingerprint import TableFingerprint
from deploygate.gate_result import CheckResult, GateResult
from deploygate.plan import reusable
from deploygate.probe import AppliedMigration, MigrationPlan, PlanStep, TableLock

RENAME_SQL = 'ALTER TABLE "unified_db_personlink" RENAME COLUMN "fahanie_cares_member_id" TO "bm_parliament_member_id";'
TABLE_SQL = 'ALTER TABLE "members_fahaniecaresmember" RENAME TO "members_bmparliamentmember";'
PASSWORD = "s3cret-pw"


def _plan() -> MigrationPlan:
    return MigrationPlan(
        steps=[
            PlanStep(
                "members",
                "0002_rename",
                ["Rename model FahanieCaresMember to BMParliamentMember"],
                ["RenameModel"],
                True,
                True,
                [TABLE_SQL],
            ),
            PlanStep(
                "unified_db",
                "0023_rename",
                ["Rename field fahanie_cares_member on personlink to bm_parliament_member"],
                ["RenameField"],
                True,
                True,
                [RENAME_SQL],
            ),
        ],
        applied_leaves={"members": "0001_initial", "unified_db": "0022_x"},
    )


def _table(oid: int, name: str, rows: int, relfilenode: int = 0) -> TableFingerprint:
    return TableFingerprint(oid=oid, name=name, relfilenode=relfilenode or oid, rows=rows, columns=[], row_hash=0)


def _rehearsal() -> SimpleNamespace:
    applied = [
        AppliedMigration(
            "members",
            "0002_rename",
            "forwards",
            0.0213,
            3,
            {
                "members_fahaniecaresmember": TableLock("AccessExclusiveLock", 0.0254),
                "django_migrations": TableLock("RowExclusiveLock", 0.03),
            },
            None,
        ),
        AppliedMigration(
            "unified_db", "0023_rename", "forwards", 0.0411, 2, {"unified_db_personlink": TableLock("AccessExclusiveLock", 0.0125)}, None
        ),
    ]
    before = {1: _table(1, "public.members_fahaniecaresmember", 2000), 2: _table(2, "public.unified_db_personlink", 200_000)}
    after = {1: _table(1, "public.members_bmparliamentmember", 2000), 2: _table(2, "public.unified_db_personlink", 200_000)}
    return SimpleNamespace(plan=_plan(), applied=applied, before=before, after=after, migrate_error=None)


def _verdict() -> Verdict:
    return Verdict(
        production_on_new=[
            Incompatibility(
                PRODUCTION_ON_NEW,
                "members.FahanieCaresMember",
                "members_fahaniecaresmember",
                None,
                ("delete", "insert", "select"),
                'relation "members_fahaniecaresmember" does not exist',
            ),
            Incompatibility(
                PRODUCTION_ON_NEW,
                "unified_db.PersonLink",
                "unified_db_personlink",
                "fahanie_cares_member",
                ("filter", "insert"),
                "column unified_db_personlink.fahanie_cares_member_id does not exist | really",
                ("null",),
            ),
        ],
        advice=["members.0002_rename (Rename model ...): keep the table: make the rename state-only (SeparateDatabaseAndState ...)"],
    )


def _result(*, compat_ok: bool = False, details: bool = True, policy_ok: bool = True) -> GateResult:
    rehearsal = _rehearsal()
    verdict = Verdict() if compat_ok else _verdict()
    checks = [
        CheckResult(
            "tests_pre/test_health.py::test_production_reports_healthy",
            "test_production_reports_healthy",
            "health",
            value="0 errors",
            threshold="<= 5",
        ),
        CheckResult(
            "tests_pre/test_policy.py::test_deploy_window",
            "test_deploy_window",
            "policy",
            outcome="passed" if policy_ok else "failed",
            message="" if policy_ok else "outside the deploy window 02:00-04:00",
        ),
        CheckResult("tests_pre/test_rehearsal.py::test_every_migration_applies", "test_every_migration_applies", "rehearsal"),
        CheckResult("tests_pre/test_rehearsal.py::test_migrations_are_reversible", "test_migrations_are_reversible", "reversal"),
        CheckResult(
            "tests_pre/test_compat.py::test_production_release_works_on_the_new_schema",
            "test_production_release_works_on_the_new_schema",
            "compat",
            outcome="passed" if compat_ok else "failed",
            message="" if compat_ok else "incompatible: requests will fail\n  more lines",
        ),
        CheckResult(
            "tests_pre/test_app_checks.py::test_app_check[test_seed.py::test_links]",
            "test_app_check[test_seed.py::test_links]",
            "app",
            value="passed in 0.10s",
        ),
    ]
    result = GateResult(
        gate="predeploy",
        started="2026-12-05T09:00:00+00:00",
        finished="2026-12-05T09:01:00+00:00",
        passed=False,
        candidate={"ref": "v2", "tag": "bmparliament:v2", "image_id": "sha256:" + "ab" * 32},
        production="7345/bmparliament_prod",
        complete=True,
        checks=checks,
    )
    if details:
        result.details = {
            plan_facts.REHEARSAL: plan_facts.rehearsal_facts(rehearsal, rewritten_tables=[], lock_timeout_ms=5000),
            plan_facts.COMPAT: plan_facts.compat_facts(verdict, rehearsal.plan),
            plan_facts.REVERSAL: {"reversed": ["unified_db.0023_rename", "members.0002_rename"], "error": None, "duration_s": 0.41},
            "db": {"password": PASSWORD},
        }
    # The whole thing goes through JSON, as the file the gate writes does.
    return GateResult.from_json(json.loads(json.dumps(result.to_json())))


def test_rehearsal_facts_join_the_plan_with_what_was_applied() -> None:
    facts = plan_facts.rehearsal_facts(_rehearsal(), rewritten_tables=["public.x"], lock_timeout_ms=5000)
    first, second = facts["migrations"]
    assert first["label"] == "members.0002_rename" and first["sql"] == [TABLE_SQL] and first["applied"]
    # The lock names the table as it was (before the rename); its rows come from whichever fingerprint knows it.
    # Django's own django_migrations row is left out.
    assert first["locks"] == [{"table": "public.members_fahaniecaresmember", "mode": "ACCESS EXCLUSIVE", "held_ms": 25.4, "rows": 2000}]
    assert second["locks"][0]["rows"] == 200_000 and second["duration_s"] == 0.0411
    assert facts["duration_s"] == 0.0624 and facts["tables_rewritten"] == ["public.x"]


def test_compat_facts_keep_model_field_value_class_and_the_fix() -> None:
    facts = plan_facts.compat_facts(_verdict(), _plan())
    assert not facts["compatible"] and facts["migration_failure"] is None
    production = facts["directions"][0]
    assert production["direction"] == PRODUCTION_ON_NEW and production["judged"]
    assert production["items"][1]["field"] == "fahanie_cares_member" and list(production["items"][1]["values"]) == ["null"]
    assert facts["directions"][1] == {"direction": CANDIDATE_ON_OLD, "judged": True, "items": [], "findings": []}
    # Two causes (a table gone, a column gone): two findings of one failure each.
    assert [f["count"] for f in production["findings"]] == [1, 1]
    assert "SeparateDatabaseAndState" in facts["advice"][0] and "incompatible" in facts["explanation"]


def test_a_failing_change_shows_verdict_fix_sql_locks_and_both_directions() -> None:
    view = plan_view.build(_result(), secrets=[PASSWORD])
    text = plan_view.render_markdown(view)
    assert text.startswith("## deploygate plan: `v2` ❌ fails\n")
    assert "- ❌ `test_production_release_works_on_the_new_schema`: incompatible: requests will fail" in text
    assert "**Fix:**" in text and "SeparateDatabaseAndState" in text
    assert f"```sql\n{RENAME_SQL}\n```" in text and f"```sql\n{TABLE_SQL}\n```" in text
    assert "| `unified_db.0023_rename` | `public.unified_db_personlink` | 200,000 | ACCESS EXCLUSIVE | 12.5 ms |" in text
    assert "| production release on the migrated schema | ❌ 2 failing |" in text
    assert "| candidate on the schema before migrating | ✅ works |" in text
    # One row per failing field, pipes in the database's words escaped so the table holds.
    assert "| `unified_db.PersonLink` | `fahanie_cares_member` | filter, insert | null | column" in text and "\\| really" in text
    assert "Tables rewritten (every row copied): none." in text
    assert "✅ reversed on the copy in 0.410 s: content identical to production's" in text
    assert "| `test_seed.py::test_links` | ✅ passed | passed in 0.10s |" in text
    assert plan_view.build(_result())["passes"] is False


def test_a_passing_change_passes_even_when_the_deploy_window_is_closed() -> None:
    view = plan_view.build(_result(compat_ok=True, policy_ok=False))
    text = plan_view.render_markdown(view)
    assert view["passes"] and text.startswith("## deploygate plan: `v2` ✅ passes")
    assert "**Fix:**" not in text
    assert "No table of the app was locked" not in text
    # The moment of a deploy is not the change's verdict: shown apart, folded.
    assert "Production today (health, policy, backup): ❌ 1 would stop a deploy right now" in text
    assert "outside the deploy window" in text


def test_without_the_rehearsal_recorded_nothing_is_proven() -> None:
    view = plan_view.build(_result(compat_ok=True, details=False))
    assert not view["passes"]
    assert "Not rehearsed." in plan_view.render_markdown(view)


def test_secrets_never_reach_the_body() -> None:
    result = _result()
    result.checks[0].message = f"could not connect with password {PASSWORD}"
    result.checks[0].outcome = "failed"
    for body in (
        plan_view.render_markdown(plan_view.build(result, secrets=[PASSWORD])),
        plan_view.render_json(plan_view.build(result, secrets=[PASSWORD])),
    ):
        assert PASSWORD not in body
    assert plan_view.scrub({"db_password": "x", "a": [f"pw={PASSWORD}"]}, [PASSWORD]) == {"db_password": "[redacted]", "a": ["pw=***"]}


def test_json_is_the_same_view() -> None:
    view = plan_view.build(_result(), reused=True)
    data = json.loads(plan_view.render_json(view))
    assert data["verdict"] == "fails" and data["gate_result_reused"]
    assert "7345" not in plan_view.render_json(view)  # production's system identifier stays out of a public body
    assert data["rehearsal"]["migrations"][1]["sql"] == [RENAME_SQL]
    assert "a gate result of this image on this production, reused" in plan_view.render_markdown(view)


def test_sql_fences_and_long_sql() -> None:
    result = _result()
    result.details["rehearsal"]["migrations"][0]["sql"] = ["--", "-- Raw SQL", "--", "SELECT '```';"] + [f"SELECT {n};" for n in range(97)]
    text = plan_view.render_markdown(plan_view.build(result))
    assert "| `members.0002_rename` | ✅ | 0.021 s | yes | 98 |" in text  # statements, not Django's comment lines
    assert "````sql\n--\n-- Raw SQL\n--\nSELECT '```';" in text
    assert f"-- ... {101 - plan_view.SQL_LINES_SHOWN} more statements" in text


def test_a_stored_result_is_reused_only_when_whole_recent_on_this_production_and_detailed() -> None:
    result = _result()
    now = result.finished_at() + dt.timedelta(minutes=5)
    assert reusable(result, "7345/bmparliament_prod", now)
    assert not reusable(result, "9999/bmparliament_prod", now)
    assert not reusable(result, "7345/bmparliament_prod", now + dt.timedelta(hours=2))
    assert not reusable(_result(details=False), "7345/bmparliament_prod", now)
    result.complete = False
    assert not reusable(result, "7345/bmparliament_prod", now)
    assert not reusable(None, "7345/bmparliament_prod", now)


def test_a_migration_that_cannot_run_on_productions_rows_says_where_and_how_to_fix_it() -> None:
    from deploygate.probe import MigrationFailure

    rehearsal = _rehearsal()
    rehearsal.applied[1] = AppliedMigration(
        "unified_db", "0023_rename", "forwards", 0.01, 1, {}, "NotNullViolation: column x contains null values"
    )
    rehearsal.migrate_error = "NotNullViolation: column x contains null values"
    failure = MigrationFailure(
        migration="unified_db.0023_rename",
        message="column x contains null values",
        sqlstate="23502",
        statement='ALTER TABLE "t" ALTER COLUMN "x" SET NOT NULL',
        table="t",
        column="x",
        offending_rows=12,
    )
    result = _result(compat_ok=True)
    result.checks[2].outcome, result.checks[2].message = "failed", "on the copy, migration unified_db.0023_rename failed at ..."
    result.details["rehearsal"] = plan_facts.rehearsal_facts(rehearsal, rewritten_tables=[], lock_timeout_ms=5000)
    result.details["compat"] = plan_facts.compat_facts(Verdict(migration_failure=failure), rehearsal.plan)
    view = plan_view.build(result)
    text = plan_view.render_markdown(view)
    assert not view["passes"] and "| `unified_db.0023_rename` | ❌ NotNullViolation: column x contains null values |" in text
    assert "The migration cannot run on production's data: unified_db.0023_rename failed at" in text and "12 rows violate it" in text
    assert "| production release on the migrated schema | ⚠️ not judged: no migrated schema |" in text
    assert view["fix"] and "backfill" in view["fix"][0]


def test_a_state_only_plan_says_no_sql_and_no_lock() -> None:
    result = _result(compat_ok=True)
    for migration in result.details["rehearsal"]["migrations"]:
        migration["sql"], migration["locks"], migration["operations"] = [], [], ["Custom state/database change combination"]
    text = plan_view.render_markdown(plan_view.build(result))
    assert "No table of the app was locked (only Django's own record of applied migrations)." in text
    assert text.count("No SQL: a state-only or Python-only change.") == 2


NOT_NULL = 'IntegrityError: null value in column "unit" of relation "shop_item" violates not-null constraint'


def _not_null_verdict() -> Verdict:
    """A NOT NULL column without a database default: every insert of the release serving now fails on it."""
    named = {"named_table": "shop_item", "named_column": "unit"}
    fields = [
        (None, ()),
        ("barcode", ("max_length=32",)),
        ("category", ("null",)),
        ("code", ("max_length=20",)),
        ("name", ("max_length=100",)),
        ("price", ("max=999999.99", "min=-999999.99", "null")),
        ("quantity", ("min=-2147483648",)),
    ]
    items = [Incompatibility(PRODUCTION_ON_NEW, "shop.Item", "public.shop_item", f, ("insert",), NOT_NULL, v, **named) for f, v in fields]
    return Verdict(production_on_new=items, advice=["shop.0002_unit (Add field unit to item): add the column nullable or with db_default"])


def test_one_root_cause_is_one_row_naming_what_it_breaks() -> None:
    result = _result()
    result.details[plan_facts.COMPAT] = plan_facts.compat_facts(_not_null_verdict(), _plan())
    text = plan_view.render_markdown(plan_view.build(result))
    assert "| production release on the migrated schema | ❌ 7 failing, 1 cause |" in text
    rows = [line for line in text.splitlines() if "violates not-null constraint" in line]
    assert rows == [
        "| production release on the migrated schema | `shop.Item` | table `public.shop_item`, `barcode`, `category` and 4 more "
        "| insert | fresh values, max_length=32, null, max_length=20 and 4 more | " + NOT_NULL + " |"
    ]


def test_a_result_recorded_before_causes_shows_one_row_per_failure() -> None:
    result = _result()
    for direction in result.details[plan_facts.COMPAT]["directions"]:
        direction.pop("findings")
    text = plan_view.render_markdown(plan_view.build(result))
    assert "| `unified_db.PersonLink` | `fahanie_cares_member` | filter, insert | null | column" in text
    assert "| `members.FahanieCaresMember` | table `members_fahaniecaresmember` | delete, insert, select | fresh values |" in text
