"""The switch benchmark's pure parts: the nginx baseline's config, the goal, the table."""

from __future__ import annotations

from bench import switch as bench_switch
from bench.loadgen import WindowStats
from bench.switch import SwitchRun


def _stats(requests: int, no_answer: int = 0, errors: int = 0, p99: float | None = 20.0, colors: dict | None = None) -> WindowStats:
    return WindowStats(requests, no_answer, errors, requests // 4, 0, 5.0 if p99 else None, p99, colors or {"blue": requests})


def test_nginx_baseline_routes_to_one_color_with_deploygates_keepalive_settings() -> None:
    text = bench_switch.render_nginx("dgswitch_web_green", 8000, "green")
    assert "server dgswitch_web_green:8000;" in text and "keepalive 16;" in text
    assert "worker_shutdown_timeout 30s;" in text and 'proxy_set_header Connection "";' in text
    assert "add_header X-Deploygate-Color green always;" in text


def test_goal_needs_no_failure_and_a_p99_ratio_within_two() -> None:
    good = SwitchRun(bench_switch.HAPROXY, 16, 50, _stats(100, p99=30.0), _stats(300, p99=20.0), 7.0)
    assert good.goal_met and good.p99_ratio == 1.5 and (good.requests, good.no_answer) == (400, 0)
    assert not SwitchRun(bench_switch.NGINX, 16, 50, _stats(100, no_answer=1), _stats(300), 250.0).goal_met
    assert not SwitchRun(bench_switch.HAPROXY, 16, 50, _stats(100, errors=1), _stats(300), 7.0).goal_met
    assert not SwitchRun(bench_switch.HAPROXY, 16, 50, _stats(100, p99=41.0), _stats(300, p99=20.0), 7.0).goal_met
    assert SwitchRun(bench_switch.HAPROXY, 16, 50, _stats(0, p99=None), _stats(300), 7.0).p99_ratio is None


def test_render_has_a_row_per_run_and_the_colors_served() -> None:
    run = SwitchRun(
        bench_switch.HAPROXY,
        64,
        50,
        _stats(100, colors={"blue": 40, "green": 60}),
        _stats(300, colors={"blue": 200, "green": 100}),
        7.0,
        log={"log_lines": 400, "answered": 400, "dropped_logs": 0},
    )
    table = bench_switch.render([run])
    row = table.splitlines()[2]
    assert row.startswith("| haproxy runtime API | 64 | 400 | 0 | 0 |") and "| 240/160 |" in row and "| 1.00x |" in row
    assert "400 access-log lines for 400 answered requests, DroppedLogs 0" in table
