"""Benchmark: rows and ratios, system facts, report comparison, CLI; the Jetson image; a torch-free CPU install."""

from __future__ import annotations

import copy
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgeproj.bench.rounds import NOISY_FACTOR
from edgeproj.bench.runner import BenchOptions, compare, run_bench

REPO = Path(__file__).resolve().parents[1]
SYSTEM_KEYS = {"cpu", "cpu_threads", "machine", "python", "numpy", "onnxruntime", "tensorrt", "opencv", "gpu", "cuda_runtime"}

# ort-cpu rows: lanes, and one session with a thread per core where there is more than one core.
CPU_ROWS = ["ort-cpu", "ort-cpu-threads"] if (os.cpu_count() or 1) > 1 else ["ort-cpu"]


def _cli(*args):
    from typer.testing import CliRunner

    from edgeproj.cli.app import app

    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def report(bundles):
    ticks = []
    opts = BenchOptions(batches=(1, 2), iterations=3, warmup=1, repeats=2, frame_sizes=(256,), line_frames=3)
    rep = run_bench(bundles["l2ae"], opts, tick=ticks.append)
    rep["_ticks"] = ticks
    return rep


def _row(rep: dict, backend: str, batch: int) -> dict:
    rows = [r for r in rep["results"] if r["backend"] == backend and r["batch"] == batch]
    assert len(rows) == 1, (backend, batch, rep["results"])
    return rows[0]


def test_run_bench_rows_and_ratios(report, bundles):
    assert report["variant"] == "l2ae" and report["bundle"] == str(bundles["l2ae"])
    assert report["iterations_per_projection"] == 3 and report["warmup_iterations"] == 1 and report["repeats"] == 2
    for batch in (1, 2):
        torch_row = _row(report, "torch-eager", batch)
        ort = _row(report, "ort-cpu", batch)
        for r in (torch_row, ort):
            assert "error" not in r, r
            assert r["iterations_per_ms"] > 0
            assert r["iterations_per_ms"] == pytest.approx(batch / r["step_ms"])
            assert r["images_per_s"] == pytest.approx(1000.0 * batch / (r["step_ms"] * 3))
            lat = r["latency_ms"]
            assert lat["min"] <= lat["p50"] <= lat["p90"] <= lat["p95"] <= lat["p99"]
            assert r["step_ms"] == pytest.approx(lat["p50"] / 3)
            assert r["gflops"] == pytest.approx(report["flops_per_iteration"] * r["iterations_per_ms"] / 1e6)
        # Interleaved rounds: the ratio is taken within each round (same work: torch's time over ours), then its median.
        per_round = [t / o for t, o in zip(torch_row["rounds"]["latency_ms"], ort["rounds"]["latency_ms"], strict=True)]
        assert len(per_round) == 2 and ort["rounds"]["ratio_vs_torch"] == pytest.approx(per_round, rel=1e-12)
        assert ort["ratio_vs_torch"] == pytest.approx(float(np.median(per_round)), rel=1e-12)
        assert torch_row["ratio_vs_torch"] == pytest.approx(1.0)
        spread = ort["spread"]["ratio_vs_torch"]
        assert spread["min"] <= ort["ratio_vs_torch"] <= spread["max"] and spread["rounds"] == 2
        assert ("ratio_vs_torch" in ort["noisy"]) == (spread["max_over_min"] > NOISY_FACTOR)
        assert ort["providers"] == ["CPUExecutionProvider"]
        # On the CPU the same-device torch is the CPU torch; no torch-cuda row without a GPU torch.
        assert ort["ratio_vs_torch_same_device"] == ort["ratio_vs_torch"]
        # The summary gives a figure only when its rounds agree; a noisy one is None there, with its reason.
        summary = report["summary"][f"ort-cpu_b{batch}"]
        if "ratio_vs_torch" in ort["noisy"]:
            assert summary["ratio_vs_torch"] is None and "rounds disagree" in summary["noisy"]["ratio_vs_torch"]
        else:
            assert summary["ratio_vs_torch"] == ort["ratio_vs_torch"]
        assert summary["spread"]["ratio_vs_torch"] == spread
    assert "torch-eager_b1" not in report["summary"]
    assert not any(r["backend"] == "torch-cuda" for r in report["results"])
    # What cannot run here is listed with its reason, never silently dropped.
    for name, why in report["unavailable"].items():
        assert name in ("ort-cuda", "ort-trt", "trt", "trt-fp16") and why
    # Every configuration at a batch is opened and warmed up, then timed round after round.
    assert report["_ticks"][:2] == ["torch-eager b1", "ort-cpu b1"]
    assert report["_ticks"][len(CPU_ROWS) + 1 : len(CPU_ROWS) + 3] == ["round 1/2 b1", "round 2/2 b1"]
    assert set(report["load"]) == {"b1", "b2"} and report["load"]["b1"]["cpu_count"] == os.cpu_count()
    # Lanes against one session with a thread per core, at every batch (on a multi-core machine).
    threads = [r for r in report["results"] if r["backend"] == "ort-cpu-threads"]
    if (os.cpu_count() or 1) > 1:
        assert sorted(r["batch"] for r in threads) == sorted({r["batch"] for r in report["results"]})
        assert all(r["iterations_per_ms"] > 0 and r["ratio_vs_torch"] > 0 for r in threads)


def test_line_figure(report, bundles):
    line = report["line"]
    assert line["backend"] == "ort-cpu" and line["channels"] == 1
    (frame,) = line["frames"]
    assert frame == "256x256x1"
    r = line["frames"][frame]
    assert "training images" in r["source"]  # the fixture's run is reachable: frames are normal parts
    rt, th = r["runtime"], r["torch_eager"]
    # The demo grid images are 128 px and the fixture bundle resizes to 128: a 256 frame is one tile.
    assert rt["tiles_per_frame"] == th["tiles_per_frame"] == 1
    # The runtime keeps two frames in flight (frames over wall time); torch runs one frame at a time.
    assert rt["in_flight"] == 2 and rt["fps"] > 0
    # Frames in interleaved rounds (5 frames, at least 2 a round: 2 rounds); a figure is the median over rounds.
    for row in (rt, th):
        assert len(row["rounds"]["fps"]) == 2 and row["fps"] == pytest.approx(float(np.median(row["rounds"]["fps"])))
    for row in (rt, th):
        assert row["latency_ms"]["p50"] <= row["latency_ms"]["p99"]
        assert 0 <= row["iterations_per_tile"] <= 30 and 0 <= row["tiles_stopped_at_x0"] <= 1
    # Same tiles, same stop rules: both engines spend the same iterations.
    assert rt["iterations_per_tile"] == pytest.approx(th["iterations_per_tile"])
    ratios = [a / b for a, b in zip(rt["rounds"]["fps"], th["rounds"]["fps"], strict=True)]
    assert r["fps_ratio_vs_torch"] == pytest.approx(float(np.median(ratios)))
    mem = line["memory"]
    assert mem["runtime"]["torch_imported"] is False and mem["torch"]["torch_imported"] is True
    assert mem["runtime_over_torch"] == pytest.approx(mem["runtime"]["peak_rss_mb"] / mem["torch"]["peak_rss_mb"])
    summary = report["summary"]["line"][frame]
    if "runtime.fps" in r["noisy"]:
        assert summary["fps"] is None
    else:
        assert summary["fps"] == pytest.approx(rt["fps"], rel=1e-2)


@pytest.mark.parametrize("sizes", ["x", "64", ","])
def test_bench_cli_bad_frame_sizes(bundles, sizes):
    res = _cli("bench", bundles["l2ae"], "--frame-sizes", sizes)
    assert res.exit_code == 2 and "--frame-sizes" in res.stderr and "Traceback" not in res.output


def test_bench_flops_and_system_facts(report):
    assert 0.48e9 <= report["flops_per_iteration"] <= 0.5e9
    sysf = report["system"]
    assert SYSTEM_KEYS <= set(sysf)
    assert sysf["cpu_threads"] == os.cpu_count() and sysf["python"] == ".".join(map(str, sys.version_info[:3]))
    import numpy
    import onnxruntime

    assert sysf["numpy"] == numpy.__version__ and sysf["onnxruntime"] == onnxruntime.__version__
    assert report["reference_conv_gflops"] is None or report["reference_conv_gflops"] > 0


def test_compare_reports(report):
    old = copy.deepcopy(report)
    for r in old["results"]:
        if "iterations_per_ms" in r:
            r["iterations_per_ms"] /= 2
    rows = compare(report, old)
    measured = [r for r in report["results"] if "iterations_per_ms" in r]
    assert len(rows) == len(measured) >= 4
    assert {(r["backend"], r["batch"]) for r in rows} == {(r["backend"], r["batch"]) for r in measured}
    assert all(r["ratio_vs_old"] == pytest.approx(2.0) for r in rows)
    # Rows without a counterpart (or that errored) are left out, not guessed.
    old["results"] = [r for r in old["results"] if not r["backend"].startswith("ort-cpu")]
    assert {r["backend"] for r in compare(report, old)} == {"torch-eager"}
    assert compare(report, {}) == []


def test_run_bench_without_torch_has_no_ratio(bundles):
    rep = run_bench(
        bundles["l2ae"],
        BenchOptions(backends=("ort-cpu",), batches=(1,), iterations=2, warmup=1, repeats=1, torch=False, line=False),
    )
    assert [r["backend"] for r in rep["results"]] == CPU_ROWS
    assert all(r["ratio_vs_torch"] is None and r["iterations_per_ms"] > 0 for r in rep["results"])


def test_bench_cli_json_and_file(bundles, tmp_path):
    out = tmp_path / "sub" / "bench.json"
    res = _cli(
        "bench", bundles["l2ae"], "--batches", "1", "--iterations", "2", "--repeats", "1", "--warmup", "1", "--json", "--out", out,
        "--frame-sizes", "256", "--line-frames", "2", "--no-memory",
    )  # fmt: skip
    assert res.exit_code == 0, (res.stderr, res.exception)
    doc = json.loads(res.stdout)
    assert json.loads(out.read_text()) == doc
    rows = doc["results"]
    assert {r["backend"] for r in rows} >= {"ort-cpu", "torch-eager"}
    for r in rows:
        assert r["batch"] == 1
        assert r["iterations_per_ms"] > 0 and r["ratio_vs_torch"] > 0
    assert doc["iterations_per_projection"] == 2

    # --compare against the file just written: one row per measured configuration.
    res = _cli(
        "bench",
        bundles["l2ae"],
        "--backends",
        "ort-cpu",
        "--no-torch",
        "--batches",
        "1",
        "--iterations",
        "2",
        "--repeats",
        "1",
        "--warmup",
        "1",
        "--json",
        "--compare",
        out,
        "--no-line",
    )
    assert res.exit_code == 0, (res.stderr, res.exception)
    cmp = json.loads(res.stdout)["compare"]
    assert cmp["old"] == str(out) and [r["backend"] for r in cmp["rows"]] == CPU_ROWS
    assert cmp["rows"][0]["ratio_vs_old"] > 0


@pytest.mark.parametrize("batches", ["x", "1,two", "1.5"])
def test_bench_cli_bad_batches(bundles, batches):
    res = _cli("bench", bundles["l2ae"], "--batches", batches)
    assert res.exit_code == 2, (res.stdout, res.stderr, res.exception)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("edgeproj: error:") and "--batches" in lines[0]
    assert "Traceback" not in res.output


# ------------------------------------------------------------------ interleaved rounds, spread, noisy figures


def test_spread_of_rounds():
    from edgeproj.bench.rounds import spread_of

    s = spread_of([3.0, 1.0, 2.0])
    assert (s.median, s.min, s.max, s.rounds) == (2.0, 1.0, 3.0, 3)
    assert s.max_over_min == 3.0 and s.rel_half_range == pytest.approx(0.5) and s.noisy
    assert not spread_of([1.0, 1.2]).noisy and not spread_of([5.0]).noisy


def test_rounds_interleave_every_configuration(bundles, monkeypatch):
    """Each round times every configuration once, so a disturbance hits them alike; every other round in reverse
    order, so no configuration is always timed first."""
    from edgeproj.bench import runner

    calls: list[str] = []

    def recording(cls):
        class Recording(cls):
            def once(self):
                calls.append(self.name)
                return super().once()

        return Recording

    monkeypatch.setattr(runner, "EagerLoop", recording(runner.EagerLoop))
    monkeypatch.setattr(runner, "RuntimeLoop", recording(runner.RuntimeLoop))
    opts = BenchOptions(backends=("ort-cpu",), batches=(1,), iterations=2, warmup=1, repeats=3, line=False)
    report = runner.measure(bundles["l2ae"], opts)
    order = ["torch-eager", *CPU_ROWS]
    assert calls == order + order[::-1] + order
    assert all(len(r.latency_rounds_ms) == 3 for r in report.rows)


def _noisy_report():
    from edgeproj.bench.report import BenchReport
    from edgeproj.bench.rounds import CpuLoad
    from edgeproj.bench.rows import BenchRow
    from edgeproj.bench.runner import _ratios

    load = CpuLoad(other_share=0.42, loadavg_before=0.5, loadavg_after=2.5, cpu_count=2)
    rows = [
        BenchRow("torch-eager", 1, iterations=10, latency_rounds_ms=[100.0, 100.0, 100.0], load=load),
        # The second round is disturbed: 4x slower there, the ratio rounds disagree by 4x.
        BenchRow("ort-cpu", 1, iterations=10, latency_rounds_ms=[10.0, 40.0, 10.0], load=load),
        BenchRow("ort-cpu-threads", 1, iterations=10, latency_rounds_ms=[20.0, 21.0, 20.0], load=load),
    ]
    _ratios(rows)
    return BenchReport("b", "l2ae", 10, 1, 3, 4.9e8, None, {"cpu": "x", "cpu_threads": 2, "onnxruntime": "1"}, rows, {})


def test_a_quiet_machine_is_not_blamed_for_a_noisy_figure():
    """Rounds that disagree while nothing else ran say so, and what steadies them; and the reason reaches
    the printed line whole (a pip extra in brackets is not taken for markup)."""
    from edgeproj.bench.rounds import CpuLoad, noisy_reason, spread_of

    why = noisy_reason(
        spread_of([10.0, 16.0, 11.0]), CpuLoad(other_share=0.0, loadavg_before=0.4, loadavg_after=0.4, cpu_count=16)
    )
    assert "no other process used the CPU" in why and "--iterations" in why and "another process used" not in why


def test_noisy_figure_is_marked_with_why_and_never_a_headline():
    doc = _noisy_report().as_json()
    noisy, steady = doc["results"][1], doc["results"][2]
    assert noisy["ratio_vs_torch"] == pytest.approx(10.0)  # the median of 10, 2.5, 10: kept in the full figures
    assert noisy["spread"]["ratio_vs_torch"]["max_over_min"] == pytest.approx(4.0)
    why = noisy["noisy"]["ratio_vs_torch"]
    assert "rounds disagree by 4.00x" in why and "another process used the CPU (" in why and "42%" in why
    assert set(noisy["noisy"]) == {"iterations_per_ms", "ratio_vs_torch", "ratio_vs_torch_same_device"}
    summary = doc["summary"]
    assert summary["ort-cpu_b1"]["ratio_vs_torch"] is None and summary["ort-cpu_b1"]["iterations_per_ms"] is None
    assert summary["ort-cpu_b1"]["noisy"]["ratio_vs_torch"] == why
    assert steady["noisy"] == {} and summary["ort-cpu-threads_b1"]["ratio_vs_torch"] == pytest.approx(5.0)


def test_bench_table_marks_noisy_figures():
    from rich.console import Console

    from edgeproj.cli.bench import print_table

    c = Console(record=True, width=160)
    report = _noisy_report()
    report.unavailable = {"ort-cuda": "no CUDAExecutionProvider; install onnxruntime-gpu: pip install 'edgeproj[gpu]'"}
    print_table(report, c)
    text = c.export_text()
    assert "pip install 'edgeproj[gpu]'" in text  # a reason is printed whole, not read as markup
    row = next(line for line in text.splitlines() if "ort-cpu " in line)
    assert "noisy" in row and "10.00" not in row
    steady = next(line for line in text.splitlines() if "ort-cpu-threads" in line)
    assert "5.00 ±" in steady and "noisy" not in steady
    assert "noisy: ort-cpu b1" in text and "rounds disagree by 4.00x" in text


# ------------------------------------------------------------------ Dockerfile.jetson


def _dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs with comments dropped and continuation lines joined."""
    text = (REPO / "Dockerfile.jetson").read_text()
    logical, buf = [], ""
    for line in text.splitlines():
        if line.lstrip().startswith("#") or not line.strip():
            continue
        if line.rstrip().endswith("\\"):
            buf += line.rstrip()[:-1] + " "
            continue
        logical.append(buf + line)
        buf = ""
    if buf:
        logical.append(buf)
    out = []
    for line in logical:
        instr, _, args = line.strip().partition(" ")
        out.append((instr.upper(), args.strip()))
    return out


def _pip_installs(instructions) -> list[str]:
    """Every `pip install ...` command of the RUN instructions (split on && and ;)."""
    cmds = []
    for instr, args in instructions:
        if instr != "RUN":
            continue
        for part in re.split(r"&&|;|\|\|", args):
            part = part.strip()
            if re.match(r"^(python3? -m )?pip3? install\b", part):
                cmds.append(part)
    return cmds


def _requirements(cmd: str, args: dict) -> list[str]:
    """Requirement arguments of one pip install command, ARG defaults substituted."""
    tokens = shlex.split(cmd)[2:] if not cmd.startswith("python") else shlex.split(cmd)[4:]
    reqs, skip = [], False
    with_value = {
        "--index-url",
        "-i",
        "--extra-index-url",
        "-f",
        "--find-links",
        "-r",
        "--requirement",
        "-c",
        "--constraint",
        "--target",
        "-t",
        "--prefix",
        "--root",
    }
    for t in tokens:
        if skip:
            skip = False
            continue
        if t in with_value:
            skip = True
            continue
        if t.startswith("-"):
            continue
        for k, v in args.items():
            t = t.replace("${" + k + "}", v).replace("$" + k, v)
        reqs.append(t)
    return reqs


def test_dockerfile_jetson():
    ins = _dockerfile()
    froms = [a for i, a in ins if i == "FROM"]
    assert len(froms) == 1
    assert re.fullmatch(r"nvcr\.io/nvidia/l4t-jetpack:r36(\.\d+)+", froms[0]), froms[0]
    args = {}
    for i, a in ins:
        if i == "ARG" and "=" in a:
            k, v = a.split("=", 1)
            args[k.strip()] = v.strip().strip('"')

    runs = " ".join(a for i, a in ins if i == "RUN")
    assert re.search(r"python3? -m venv --system-site-packages\b", runs)
    venv = re.search(r"python3? -m venv --system-site-packages\s+(\S+)", runs).group(1).strip('"')
    env = " ".join(a for i, a in ins if i == "ENV")
    assert "$VIRTUAL_ENV" in venv or "/opt/edgeproj" in venv
    assert re.search(r"PATH=\S*/opt/edgeproj/bin", env), "the venv must come first on PATH"

    pips = _pip_installs(ins)
    assert pips, "no pip install found"
    reqs = [r for cmd in pips for r in _requirements(cmd, args)]
    ort = [r for r in reqs if r.lower().startswith("onnxruntime")]
    assert ort and all(re.fullmatch(r"onnxruntime-gpu==\d+\.\d+(\.\d+)?", r) for r in ort), ort
    names = {re.split(r"[\[<>=!~ ;]", r, maxsplit=1)[0].lower() for r in reqs}
    assert not {"torch", "torchvision", "opencv-python", "opencv-python-headless", "opencv-contrib-python"} & names, names
    for cmd in pips:
        assert "torch" not in cmd, cmd
        assert "opencv-python" not in cmd, cmd
        assert "[train" not in cmd and "[cpu" not in cmd and "[gpu" not in cmd, cmd
    # The project itself goes in without its dependency resolution pulling extras.
    assert any("--no-deps" in cmd and "." in _requirements(cmd, args) for cmd in pips)

    entry = [a for i, a in ins if i == "ENTRYPOINT"]
    assert len(entry) == 1 and json.loads(entry[0]) == ["edgeproj"]


# ------------------------------------------------------------------ a fresh CPU install, no torch


@pytest.mark.slow
@pytest.mark.skipif(
    os.environ.get("EDGEPROJ_VENV_TEST") != "1",
    reason="creates a venv and installs edgeproj[cpu] from PyPI; set EDGEPROJ_VENV_TEST=1 to run",
)
def test_cpu_install_projects_without_torch(bundles, demo_root, tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    bindir = venv / ("Scripts" if os.name == "nt" else "bin")
    py = bindir / ("python.exe" if os.name == "nt" else "python")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONNOUSERSITE")}
    env["PYTHONNOUSERSITE"] = "1"
    # Install from a copy: an in-tree build would leave build/ and egg-info behind in the checkout.
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    shutil.copytree(REPO / "edgeproj", src / "edgeproj", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    pip = subprocess.run(
        [str(py), "-m", "pip", "install", "--disable-pip-version-check", f"{src}[cpu]"],
        capture_output=True,
        text=True,
        timeout=1800,
        env=env,
        cwd=tmp_path,
    )
    assert pip.returncode == 0, pip.stdout[-3000:] + pip.stderr[-3000:]

    no_torch = subprocess.run([str(py), "-c", "import torch"], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert no_torch.returncode != 0 and "ModuleNotFoundError" in no_torch.stderr

    image = demo_root / "grid" / "test" / "hole" / "000.png"
    code = (
        "import importlib.util, json, sys\n"
        "import edgeproj\n"
        "from edgeproj.runtime import Projector\n"
        "with Projector.from_bundle(sys.argv[1], backend='ort-cpu') as p:\n"
        "    (r,) = p.project([sys.argv[2]], settings=p.settings(max_iterations=3))\n"
        "print(json.dumps({'file': edgeproj.__file__, 'score': r.score, 'shape': list(r.map.shape),\n"
        "                  'torch_loaded': 'torch' in sys.modules, 'torch_found': importlib.util.find_spec('torch') is not None}))\n"
    )
    out = subprocess.run(
        [str(py), "-c", code, str(bundles["l2ae"]), str(image)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    doc = json.loads(out.stdout.strip().splitlines()[-1])
    assert Path(doc["file"]).resolve().is_relative_to(venv.resolve()), doc["file"]
    assert doc["torch_loaded"] is False and doc["torch_found"] is False
    assert doc["shape"] == [128, 128] and doc["score"] > 0

    cli = subprocess.run(
        [
            str(bindir / "edgeproj"),
            "project",
            str(bundles["l2ae"]),
            str(image),
            "--out",
            str(tmp_path / "o"),
            "--json",
            "--max-iterations",
            "3",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=tmp_path,
    )
    assert cli.returncode == 0, cli.stderr[-3000:]
    assert json.loads(cli.stdout)["images"][0]["score"] > 0
