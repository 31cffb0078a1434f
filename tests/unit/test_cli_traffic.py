"""`deploygate traffic` is bounded in time: an unbounded or empty run is refused in one line, before anything is asked."""

from __future__ import annotations

import pytest

from deploygate import cli


@pytest.mark.parametrize("seconds", ["0", "-1", "601"])
def test_traffic_outside_1_to_600_seconds_is_refused_in_one_line(seconds: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["traffic", "--seconds", seconds]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--seconds must be more than 0 and at most 600" in err[0], err
