"""Packaging: README commands and CI agree, the CLI answers fast without heavy imports."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[1]


def _readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    return re.findall(r"```bash\n(.+?)\n```", text)


def test_ci_runs_the_readme_test_command():
    cmds = _readme_commands()
    test_cmd = next(c for c in cmds if "pytest" in c)
    assert test_cmd in (ROOT / ".ci" / "run").read_text()
    assert any("edgeproj demo" in c for c in cmds)


def test_torch_is_a_range_and_cpu_gpu_extras_are_separate():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    train = meta["optional-dependencies"]["train"]
    torch_req = next(r for r in train if r.startswith("torch"))
    assert "==" not in torch_req and ">=" in torch_req
    assert not any(r.startswith("torch") for r in meta["dependencies"])
    assert not any("onnxruntime-gpu" in r for r in meta["optional-dependencies"]["cpu"])
    assert not any(r.startswith("onnxruntime>") for r in meta["optional-dependencies"]["gpu"])


def test_help_and_version_import_nothing_heavy():
    code = (
        "import sys; from edgeproj.cli.app import app; "
        "heavy = [m for m in ('torch', 'onnx', 'onnxruntime', 'cv2') if m in sys.modules]; print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    ver = subprocess.run([sys.executable, "-m", "edgeproj", "--version"], capture_output=True, text=True)
    assert ver.returncode == 0 and ver.stdout.startswith("edgeproj ")
    helptext = subprocess.run([sys.executable, "-m", "edgeproj", "--help"], capture_output=True, text=True)
    assert helptext.returncode == 0
    for verb in ("train", "export", "project", "inpaint", "data", "calibrate", "evaluate", "inspect", "bench", "demo"):
        assert verb in helptext.stdout


def test_errors_are_one_line_with_exit_code_2(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "edgeproj", "project", str(tmp_path / "nobundle"), str(tmp_path), "--out", str(tmp_path / "o")],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 2
    assert out.stderr.strip().startswith("edgeproj: error:") and len(out.stderr.strip().splitlines()) == 1


def test_the_wheel_ships_the_package_data(tmp_path):
    """Files read with importlib.resources (the live page's HTML) are in the built wheel, not only in the checkout."""
    import zipfile

    pytest.importorskip("setuptools")
    pytest.importorskip("wheel")
    src = tmp_path / "src"
    shutil.copytree(ROOT / "edgeproj", src / "edgeproj", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    out = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path / "dist"), str(src)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    names = zipfile.ZipFile(next((tmp_path / "dist").glob("*.whl"))).namelist()
    data = [
        p.relative_to(ROOT).as_posix() for p in (ROOT / "edgeproj").rglob("*") if p.is_file() and p.suffix not in (".py", ".pyc")
    ]
    assert "edgeproj/line/live/page.html" in data
    assert [d for d in data if d not in names] == []
