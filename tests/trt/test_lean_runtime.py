"""The runner against a REAL TensorRT library: the lean runtime (PyPI tensorrt-lean-cu12-libs +
tensorrt-lean-cu12-bindings, module ``tensorrt_lean_bindings``), which installs without a GPU.

What is exercised for real: the import, capability probing of the real module, the plan-version refusal before
anything is deserialized, and ``trt.Runtime`` of the real library failing without a GPU -> segdeploy's one-line
error. The runs happen in a subprocess: a TensorRT object whose creation failed would crash the process if it were
ever destroyed (segdeploy never destroys it), and the exit code proves it.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("tensorrt_lean_bindings") is None,
    reason="the lean TensorRT runtime is not installed (pip install tensorrt-lean-cu12-libs tensorrt-lean-cu12-bindings)",
)

SCRIPT = textwrap.dedent("""
    import json, sys
    import tensorrt_lean_bindings as trt
    from segdeploy.errors import SegdeployError
    from segdeploy.runners.tensorrt import TensorRTOptions, TensorRTRunner
    from segdeploy.trt.capabilities import probe

    calls = []
    _runtime = trt.Runtime
    def spy_runtime(logger):
        calls.append("Runtime")
        return _runtime(logger)
    trt.Runtime = spy_runtime  # record whether segdeploy reached the real runtime

    out = {"version": trt.__version__, "caps": probe(trt).to_dict(), "runs": {}}
    for label, path in (("foreign", sys.argv[1]), ("matching", sys.argv[2])):
        del calls[:]
        try:
            with TensorRTRunner(path, TensorRTOptions(runtime="lean")) as r:
                r.infer(__import__("numpy").zeros((1, 3, 64, 64), "float32"))
            out["runs"][label] = {"error": None, "calls": list(calls)}
        except SegdeployError as e:
            out["runs"][label] = {"error": type(e).__name__, "message": e.message, "calls": list(calls)}
    print(json.dumps(out))
""")


def test_lean_runtime_refusal_and_real_runtime_failure(tmp_path):
    import tensorrt_lean_bindings as trt

    from trt_helpers import plan_bytes

    installed = tuple(int(p) for p in trt.__version__.split("."))
    foreign = (installed[0], installed[1] + 1, 0, 1)  # same major, another minor: never loadable
    (tmp_path / "foreign.engine").write_bytes(plan_bytes(foreign))
    (tmp_path / "matching.engine").write_bytes(plan_bytes(installed))
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "foreign.engine"),
                           str(tmp_path / "matching.engine")], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"exit {proc.returncode}: {proc.stderr[-2000:]}"
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    caps = out["caps"]
    assert caps["module"] == "tensorrt_lean_bindings" and not caps["can_build"] and caps["execute_async_v3"]

    f = out["runs"]["foreign"]
    assert f["error"] == "PlanVersionError" and f["calls"] == []  # refused before the real runtime existed
    assert f"built with TensorRT {'.'.join(map(str, foreign))} but TensorRT {out['version']} is installed" in f["message"]

    m = out["runs"]["matching"]
    assert m["calls"] == ["Runtime"] and m["error"] is not None  # reached the real library; never a result
    assert "\n" not in m["message"]
    if m["error"] == "TensorRTRuntimeError":  # no GPU / no driver (this CI machine)
        assert m["message"].startswith(f"TensorRT {out['version']} (tensorrt_lean_bindings) could not start its runtime")
        assert "CUDA" in m["message"]
    else:  # a GPU machine: the runtime starts and refuses the handcrafted (header-only) plan
        assert m["error"] == "ModelLoadError" and "could not load matching.engine" in m["message"]
