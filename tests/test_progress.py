"""Progress that works where people run long jobs: timestamped lines when stderr is not a terminal."""

from __future__ import annotations

import re

from cli_helpers import run_cli

from edgeproj.cli.output import LogProgress


def test_log_progress_prints_every_tenth_and_every_interval():
    now = [0.0]
    lines: list[str] = []
    prog = LogProgress(every_s=30.0, clock=lambda: now[0], write=lines.append)
    task = prog.add_task("train l2ae", total=1000, info="")
    for step in range(1, 1001):
        prog.update(task, completed=step, info=f"loss {1 / step:.3g}")
    # started, 10%, 20%, ..., 100% (done): no line per step
    assert lines[0] == "train l2ae: started"
    assert [re.search(r"\((\d+)%\)", x).group(1) for x in lines[1:]] == [str(p) for p in range(10, 101, 10)]
    assert lines[-1].endswith("done")
    slow = prog.add_task("statistics", total=None, info="")
    lines.clear()
    for _ in range(5):
        now[0] += 16.0  # a line every 30 s even without a total
        prog.update(slow, advance=1)
    assert len(lines) == 2


def test_verbs_print_progress_lines_when_not_a_terminal_and_quiet_silences_them(calibrated_bundle, demo_root, tmp_path):
    good = demo_root / "grid" / "test" / "good"
    res = run_cli("calibrate", calibrated_bundle.parent / "missing", good)  # error path: no progress before the error
    assert res.exit_code == 2
    import shutil

    b = tmp_path / "b"
    shutil.copytree(calibrated_bundle, b)
    res = run_cli("calibrate", b, demo_root / "grid" / "train" / "good")
    assert res.exit_code == 0, res.stderr
    stamped = [x for x in res.stderr.splitlines() if re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", x)]
    assert any("calibrate: started" in x for x in stamped) and any(x.endswith("done") for x in stamped)
    res = run_cli("calibrate", b, demo_root / "grid" / "train" / "good", "--quiet")
    assert res.exit_code == 0 and not re.search(r"\d{4}-\d\d-\d\dT", res.stderr)


def test_log_progress_ends_a_task_that_stops_before_its_total():
    """Training on its plateau stops before the step cap: the last line says done at the steps it ran."""
    from edgeproj.cli.output import LogProgress

    lines = []
    prog = LogProgress(write=lines.append)
    task = prog.add_task("train l2ae", total=30000)
    prog.update(task, completed=8, total=8, info="stopped by the plateau")
    assert lines[-1] == "train l2ae: 8/8 (100%) stopped by the plateau done"
