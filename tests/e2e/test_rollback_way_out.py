"""A rollback whose verify finds a schema it cannot fix closes only through its recorded way out.

The deploy of v2-safe is killed after migrate, then production's django_migrations gets a
name neither release knows (as a migration faked by hand would leave): undoing the plan
cannot remove it, so ``rollback_verify`` fails every time, naming the way out; with
``--accept-schema-mismatch --reason`` the rollback closes the deploy, the mismatch and the
reason recorded in the ledger and the report.
"""

from __future__ import annotations

import time

from deploygate import ledger
from deploygate.database import connect
from deploygate.deploy.state import OPEN_OUTCOMES
from tests.e2e.conftest import report_of

UNKNOWN = ("unified_db", "0099_recorded_by_hand")


def test_a_mismatch_rollback_cannot_fix_closes_only_when_accepted_with_a_reason(dg, traffic, platform, assert_back_on_v1) -> None:
    dg.kill_after("   migrate ok", "deploy", "--candidate", "v2-safe")
    db = platform.database()
    with connect(db) as conn:
        conn.execute("INSERT INTO django_migrations (app, name, applied) VALUES (%s, %s, now())", list(UNKNOWN))
    try:
        time.sleep(2)  # production runs on, unattended
        refused = dg.run("rollback")
        assert refused.code == 2, refused.output[-3000:]
        assert "schema does not match blue" in refused.output and "0099_recorded_by_hand" in refused.output
        assert '--accept-schema-mismatch --reason "why"' in refused.output
        assert ledger.entries(db, "deploy")[-1].outcome in OPEN_OUTCOMES, "the deploy must stay open"

        accepted = dg.run("rollback", "--accept-schema-mismatch", "--reason", "e2e: 0099 was recorded by hand")
        assert accepted.code == 0, accepted.output[-3000:]
        last = ledger.entries(db, "deploy")[-1]
        assert last.outcome == "rolled_back"
        recorded = last.detail["exceptions"]["accept schema mismatch"]
        assert recorded.startswith("e2e: 0099 was recorded by hand (accepted: schema does not match blue") and "0099" in recorded
        report = report_of(accepted.output)
        assert report["record"]["exceptions"]["accept schema mismatch"] == recorded
        assert dg.run("rollback").code == 2, "nothing is left open"
    finally:
        with connect(db) as conn:
            conn.execute("DELETE FROM django_migrations WHERE app = %s AND name = %s", list(UNKNOWN))
    assert_back_on_v1([r.created_id for r in traffic.stop() if r.created_id is not None])
