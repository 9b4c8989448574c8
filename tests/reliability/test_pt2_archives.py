"""Crafted ``.pt2`` archives that run code under plain ``torch.export.load`` (or exhaust its memory).

Each hostile archive is first shown to be a live exploit: a subprocess running plain PyTorch
(``torch.export.load``, then ``.module()(x)`` for the vectors that fire when the program runs) writes
the payload's marker file. Then ``segdeploy export``, ``check --reference`` and ``precision`` must refuse
it with exactly one ``error:`` line and exit 1, the marker is never written and nothing is published.
"""

from __future__ import annotations

import io
import json
import pickle
import shutil
import subprocess
import sys
import warnings
import zipfile
from pathlib import Path

import pytest
import torch

from rhelpers import env, one_error_line, run, snapshot


class _Payload:
    """Unpickling this runs code: it writes the marker file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('pwned')",))


def _marker_code(marker: Path) -> str:
    return f"open({str(marker)!r}, 'w').write('pwned')"


def _no_dots(code: str) -> str:
    """``code`` as a Python expression without '.' or quotes (survives FQN splitting and string literals)."""
    return "+".join(f"chr({ord(c)})" for c in code)


def _saved(obj) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def _members(path: Path) -> list[tuple[str, bytes]]:
    with zipfile.ZipFile(path) as z:
        return [(i.filename, z.read(i.filename)) for i in z.infolist()]


def _write(path: Path, items: list[tuple[str, bytes]]) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate names we write on purpose
        with zipfile.ZipFile(path, "w") as z:
            for name, data in items:
                z.writestr(zipfile.ZipInfo(name), data)
    return path


def _patch_json(items, suffix, fn):
    out = []
    for name, data in items:
        if name.endswith(suffix):
            doc = json.loads(data)
            fn(doc)
            data = json.dumps(doc).encode()
        out.append((name, data))
    return out


def _with_payload(items, suffix, payload: bytes):
    return [(n, payload if n.endswith(suffix) else d) for n, d in items]


# ----------------------------------------------------------------------------- the hostile archives
# each: (clean members, root, marker) -> members


def _absolute_weight_path(items, root, marker):
    """Bypass (a): a weight record named '/w'; torch joins it to '/w' and reads '<root>//w'."""
    def absolute(cfg):
        cfg["config"]["c1.weight"].update(path_name="/w", use_pickle=True)
    return _patch_json(items, "model_weights_config.json", absolute) + [(f"{root}//w", _saved(_Payload(marker)))]


def _decoy_archive_format(items, root, marker):
    """Bypass (b): a second archive_format entry before the real one."""
    return [(f"{root}/zz/archive_format", b"pt2")] + _with_payload(items, "data/sample_inputs/model.pt",
                                                                   _saved(_Payload(marker)))


def _duplicate_member(items, root, marker):
    """Python's zipfile reads the last of two same-named members, PyTorch's reader (here) the first."""
    return [(f"{root}/data/sample_inputs/model.pt", _saved(_Payload(marker)))] + items


def _case_duplicate_member(items, root, marker):
    """PyTorch looks records up ignoring case: 'DATA/sample_inputs/model.pt' answers for the real one."""
    return [(f"{root}/DATA/sample_inputs/model.pt", _saved(_Payload(marker)))] + items


def _dotdot_record_path(items, root, marker):
    def dotdot(cfg):
        cfg["config"]["c1.weight"].update(path_name="../w", use_pickle=True)
    return (_patch_json(items, "model_weights_config.json", dotdot)
            + [(f"{root}/data/weights/../w", _saved(_Payload(marker)))])


def _constant(items, root, path_name: str, payload: bytes):
    def add(cfg):
        cfg.setdefault("config", {})["hidden"] = {"path_name": path_name, "is_param": False, "use_pickle": True,
                                                  "tensor_meta": None}
    return (_patch_json(items, "model_constants_config.json", add)
            + [(f"{root}/data/constants/{path_name}", payload)])


def _opaque_object(items, root, marker):
    return _constant(items, root, "opaque_obj_0", pickle.dumps(_Payload(marker)))


def _pickled_constant(items, root, marker):
    return _constant(items, root, "tensor_0", _saved(_Payload(marker)))


def _aotinductor(items, root, marker):
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler to build the AOTInductor library payload")
    src = marker.parent / "evil.c"
    lib = marker.parent / "evil.so"
    src.write_text('#include <stdio.h>\n__attribute__((constructor)) static void pwn(void) {\n'
                   f'  FILE *f = fopen("{marker}", "w"); if (f) {{ fputs("pwned", f); fclose(f); }}\n}}\n')
    subprocess.run([cc, "-shared", "-fPIC", "-o", str(lib), str(src)], check=True, capture_output=True)
    return items + [(f"{root}/data/aotinductor/model/model.wrapper.so", lib.read_bytes()),
                    (f"{root}/data/aotinductor/model/model.wrapper_metadata.json", b'{"AOTI_DEVICE_KEY": "cpu"}')]


def _shape_expression(items, root, marker):
    """A symbolic size of the input: PyTorch parses it with sympy.sympify, i.e. eval."""
    def inject(program):
        size = program["graph_module"]["graph"]["tensor_values"]["x"]["sizes"][0]["as_expr"]
        size["expr_str"] = f"exec({_marker_code(marker)!r}) or {size['expr_str']}"
    return _patch_json(items, "models/model.json", inject)


def _guard_code(items, root, marker):
    """A guard string: ExportedProgram.module() pastes it into the code of its input-guard function."""
    def inject(program):
        program["guards_code"].append(f"(exec({_no_dots(_marker_code(marker))}) or 1) != 0")
    return _patch_json(items, "models/model.json", inject)


_EVIL_FQN = 'c2.b", None) or exec({}) or getattr(self, "q'


def _parameter_name(items, root, marker):
    """A parameter name that breaks out of the getattr(self, "...") literal in FX's generated forward."""
    fqn = _EVIL_FQN.format(_no_dots(_marker_code(marker)))

    def rename_in_program(program):
        for spec in program["graph_module"]["signature"]["input_specs"]:
            if spec.get("parameter", {}).get("parameter_name") == "c2.bias":
                spec["parameter"]["parameter_name"] = fqn

    def rename_in_config(cfg):
        cfg["config"][fqn] = cfg["config"].pop("c2.bias")
    return _patch_json(_patch_json(items, "models/model.json", rename_in_program), "model_weights_config.json",
                       rename_in_config)


# name -> (crafter, what plain torch must do to fire it, fragment of segdeploy's error line)
VECTORS = {
    "absolute_weight_path": (_absolute_weight_path, "load", "has an empty path segment ('//')"),
    "decoy_archive_format": (_decoy_archive_format, "load", "has 2 archive_format entries"),
    "duplicate_member": (_duplicate_member, "load", "is present twice"),
    "case_duplicate_member": (_case_duplicate_member, "load", "PyTorch ignores case"),
    "dotdot_record_path": (_dotdot_record_path, "load", "has a '.' or '..' path segment"),
    "opaque_object": (_opaque_object, "load", "data/constants/opaque_obj_0 (an opaque object"),
    "pickled_constant": (_pickled_constant, "load", "data/constants/tensor_0 (unpickling it calls exec)"),
    "aotinductor": (_aotinductor, "load", "data/aotinductor/ (compiled AOTInductor libraries"),
    "shape_expression": (_shape_expression, "load", "models/model.json (PyTorch would run part of it as Python: "
                                                    "a shape expression calls exec"),
    "guard_code": (_guard_code, "run", "its input-guard code calls exec"),
    "parameter_name": (_parameter_name, "run", "its generated forward code calls getattr"),
}
_CODE_VECTORS = {"opaque_object", "pickled_constant", "aotinductor", "shape_expression", "guard_code",
                 "parameter_name"}  # refused for running code (--trust-pickle is the opt-in), the rest for layout


@pytest.fixture(scope="module")
def clean_pt2(tmp_path_factory) -> Path:
    import rmodels
    from torch.export import Dim

    ep = torch.export.export(rmodels.tiny(), (torch.randn(2, 3, 32, 32),),
                             dynamic_shapes=({0: Dim("b", max=4), 2: 2 * Dim("h", max=64), 3: 2 * Dim("w", max=64)},))
    p = tmp_path_factory.mktemp("pt2") / "clean.pt2"
    torch.export.save(ep, str(p))
    return p


@pytest.fixture(scope="module")
def hostile(clean_pt2, tmp_path_factory) -> dict[str, tuple[Path, Path]]:
    """name -> (archive, marker its payload writes)."""
    items = _members(clean_pt2)
    root = items[0][0].split("/")[0]
    out = {}
    for name, (craft, _, _) in VECTORS.items():
        d = tmp_path_factory.mktemp(name)
        marker = d / "MARKER"
        try:
            out[name] = (_write(d / f"{name}.pt2", craft(items, root, marker)), marker)
        except pytest.skip.Exception:
            continue
    return out


_CONTROL = """
import json, sys, torch
fired = {}
for name, path, trigger, marker in json.loads(sys.argv[1]):
    try:
        ep = torch.export.load(path)
        if trigger == "run":
            ep.module()(torch.randn(2, 3, 32, 32))
    except BaseException:
        pass
    import os
    fired[name] = os.path.exists(marker)
    if fired[name]:
        os.unlink(marker)
print(json.dumps(fired))
"""


@pytest.fixture(scope="module")
def live(hostile) -> dict[str, bool]:
    """Control: which archives really run their payload under plain PyTorch (one subprocess for all)."""
    jobs = [(n, str(p), VECTORS[n][1], str(m)) for n, (p, m) in hostile.items()]
    r = subprocess.run([sys.executable, "-c", _CONTROL, json.dumps(jobs)], capture_output=True, text=True, env=env(),
                       timeout=600)
    return json.loads(r.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    from PIL import Image

    d = tmp_path_factory.mktemp("images")
    Image.new("RGB", (32, 32), (10, 20, 30)).save(d / "a.png")
    return d


@pytest.mark.parametrize("name", sorted(VECTORS))
def test_hostile_archive_is_refused_everywhere(name, hostile, live, images, good_export, tmp_path, capsys):
    if name not in hostile:
        pytest.skip("archive could not be built here (no C compiler)")
    evil, marker = hostile[name]
    assert live[name], f"{name}: plain torch.export.load must run the payload for this test to mean anything"
    assert not marker.exists()
    before = snapshot(good_export)
    out = tmp_path / "out"
    for argv in (["export", evil, "--out", out, "-q"],
                 ["check", "--reference", evil, "--candidate", good_export / "model.onnx", "--data", images, "-q"],
                 ["precision", good_export, evil, "--fp16", "-q"]):
        code, _, err = run(capsys, *argv)
        line = one_error_line(err)
        assert code == 1, err
        assert VECTORS[name][2] in line, line
        assert ("--trust-pickle" in line) == (name in _CODE_VECTORS), line
        assert not marker.exists(), f"{argv[0]} ran the payload"
    assert not out.exists()
    assert snapshot(good_export) == before


def test_custom_object_is_refused(clean_pt2, tmp_path, capsys):
    """A TorchScript custom object (torch._C._pickle_load_obj): refused like opaque objects (no live proof: the
    TorchScript unpickler does not resolve Python globals, but it constructs registered classes)."""
    items = _members(clean_pt2)
    evil = _write(tmp_path / "custom.pt2", _constant(items, items[0][0].split("/")[0], "custom_obj_0", b"\x80\x02}q\x00."))
    code, _, err = run(capsys, "export", evil, "--out", tmp_path / "o", "-q")
    line = one_error_line(err)
    assert code == 1 and "data/constants/custom_obj_0 (a TorchScript custom object" in line and "--trust-pickle" in line
    assert not (tmp_path / "o").exists()


_BOMB_GIB = 1


@pytest.fixture(scope="module")
def zip_bomb(clean_pt2, tmp_path_factory) -> Path:
    """The clean program with its sample inputs replaced by 1 GiB of zeros, deflated to ~4 MiB."""
    p = tmp_path_factory.mktemp("bomb") / "bomb.pt2"
    chunk = bytes(1 << 20)
    with zipfile.ZipFile(p, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as z:
        for name, data in _members(clean_pt2):
            if name.endswith("data/sample_inputs/model.pt"):
                with z.open(name, "w") as w:
                    for _ in range(_BOMB_GIB << 10):
                        w.write(chunk)
            else:
                z.writestr(name, data)
    return p


# VmHWM, not ru_maxrss: Linux carries ru_maxrss over fork+exec from the parent (a pytest process of several GB),
# while exec gives the child a new address space whose high-water mark starts at zero.
_RSS_PROBE = """
import json, re, runpy, sys
sys.argv = ["segdeploy", *sys.argv[1:]]
try:
    runpy.run_module("segdeploy", run_name="__main__")
except SystemExit as e:
    code = e.code
hwm = int(re.search(r"VmHWM:\\s*(\\d+)", open("/proc/self/status").read()).group(1))
print(json.dumps({"code": code, "maxrss_kib": hwm}))
"""


def test_zip_bomb_is_one_line_in_bounded_memory(zip_bomb, tmp_path):
    r = subprocess.run([sys.executable, "-c", _RSS_PROBE, "export", str(zip_bomb), "--out", str(tmp_path / "o"), "-q"],
                       capture_output=True, text=True, env=env(), timeout=600)
    result = json.loads(r.stdout.strip().splitlines()[-1])
    line = one_error_line(r.stderr)
    assert result["code"] == 1 and "a zip bomb" in line and "data/sample_inputs/model.pt" in line, r.stderr
    assert result["maxrss_kib"] < (_BOMB_GIB << 20), "the bomb was inflated"
    assert not (tmp_path / "o").exists()


def test_zip_bomb_is_refused_by_check_and_precision(zip_bomb, good_export, images, capsys):
    for argv in (["check", "--reference", zip_bomb, "--candidate", good_export / "model.onnx", "--data", images, "-q"],
                 ["precision", good_export, zip_bomb, "--fp16", "-q"]):
        code, _, err = run(capsys, *argv)
        assert code == 1 and "a zip bomb" in one_error_line(err)


def test_torch_diagnostics_do_not_print_before_the_error_line(clean_pt2, tmp_path, capsys):
    """A program torch cannot deserialize: its logged traceback is captured; the line carries the real cause."""
    def broken(program):
        program["graph_module"]["graph"]["nodes"][0]["target"] = "torch.ops.aten.no_such_op.default"
    evil = _write(tmp_path / "broken.pt2", _patch_json(_members(clean_pt2), "models/model.json", broken))
    code, _, err = run(capsys, "export", evil, "--out", tmp_path / "o", "-q")
    line = one_error_line(err)
    assert code == 1 and line.startswith("error: cannot load torch.export program") and "no_such_op" in line
    assert len(err.strip().splitlines()) == 1, err


@pytest.mark.parametrize("suffix", ["model_weights_config.json", "models/model.json"])
def test_deeply_nested_json_records_are_named_not_a_recursion_error(suffix, clean_pt2, tmp_path, capsys):
    """PyTorch parses the payload configs and the program with plain json.loads (RecursionError on [[[[...]]]]):
    the read sink parses them with segdeploy.jsonio first, so the line names the entry and the nesting."""
    deep = b"[" * 100_000 + b"]" * 100_000
    evil = _write(tmp_path / "deep.pt2", _with_payload(_members(clean_pt2), suffix, deep))
    code, _, err = run(capsys, "export", evil, "--out", tmp_path / "o", "-q")
    line = one_error_line(err)
    assert code == 1 and f"{suffix.rsplit('/', 1)[-1]} is not valid JSON (nested 100000 levels deep" in line, line
    assert "recursion" not in line and not (tmp_path / "o").exists()


@pytest.mark.parametrize("name", ["absolute_weight_path", "decoy_archive_format", "duplicate_member",
                                  "case_duplicate_member", "dotdot_record_path", "opaque_object", "pickled_constant",
                                  "aotinductor"])
def test_the_sinks_hold_without_the_layout_check(name, hostile):
    """Defence in depth: even if the layout check were fooled, PyTorch's own unpickling calls are restricted."""
    from segdeploy.safety import Refused, restricted_pt2_load

    if name not in hostile:
        pytest.skip("archive could not be built here (no C compiler)")
    evil, marker = hostile[name]
    with pytest.raises(Refused) as refused:
        with restricted_pt2_load():
            torch.export.load(str(evil))
    assert not marker.exists()
    assert any(why in str(refused.value) for why in ("unpickling it calls exec", "record path", "opaque object",
                                                     "runs native code"))
    import pickle as pickle_module

    assert pickle_module.loads(pickle_module.dumps([1])) == [1]  # restored after the block


def test_a_moved_sink_refuses_instead_of_loading_unrestricted(clean_pt2, monkeypatch):
    """Another PyTorch whose guard-code builder no longer calls exec: segdeploy cannot restrict it, so it refuses."""
    import torch.export._unlift as unlift

    from segdeploy.errors import UntrustedPickleError
    from segdeploy.load import load_model

    real = unlift._convert_guards_code_to_fn
    monkeypatch.setattr(unlift, "_convert_guards_code_to_fn", lambda *a, **k: real(*a, **k))
    with pytest.raises(UntrustedPickleError, match=r"no longer calls exec.*--trust-pickle"):
        load_model(clean_pt2)
    assert load_model(clean_pt2, trust_pickle=True).format == "pt2"


_FORWARD_OK = ("def forward(self, x):\n    x, = fx_pytree.tree_flatten_spec(([x], {}), self._in_spec)\n"
               "    w = self.c1.weight\n    g = self._guards_fn(x);  g = None\n"
               "    y = torch.ops.aten.conv2d.default(x, w, None, [1, 1]);  x = w = None\n"
               "    z = getattr(self.layers, '0')\n    return pytree.tree_unflatten((y,), self._out_spec)\n")


@pytest.mark.parametrize("src, problem", [
    (_FORWARD_OK, None),
    ("def _(*args):\n  torch._assert(args[0].size()[0] <= 4, 'Guard failed: x.size()[0] <= 4')\n  return\n", None),
    ("def forward(self, x):\n    exec('1')\n", "calls exec"),
    ("def forward(self, x):\n    torch.os.system('id')\n", "calls torch.os.system, which is not a PyTorch operator"),
    ("def forward(self, x):\n    self = getattr(torch, 'os');  self.system('id')\n", "rebinds self"),
    ("def forward(self, x):\n    getattr = self.c1;  getattr('a', 'b')\n", "rebinds getattr"),
    ("def forward(self, getattr):\n    getattr('a', 'b')\n", "has a parameter named getattr"),
    ("def forward(self, x):\n    self.to_folder('/tmp/x')\n", "calls self.to_folder"),
    ("def forward(self, x):\n    getattr(self, '__class__')\n", "calls getattr with a computed or special"),
    ("def forward(self, x):\n    x.numpy().tofile('f')\n", "calls x.numpy().tofile"),
    ("def forward(self, x):\n    y = x.__class__\n", "reads the attribute __class__"),
    ("import os\ndef forward(self, x):\n    pass\n", "runs a top-level Import statement"),
    ("def forward(self, x=exec('1')):\n    pass\n", "computes a parameter default"),
    ("def forward(self, x):\n    y = [i for i in x]\n", "evaluates a ListComp expression"),
])
def test_generated_code_allow_list(src, problem):
    """What PyTorch's generated forward/guard code may do: shape methods, operators, submodules, constant getattr."""
    import torch.fx._pytree as fx_pytree
    import torch.utils._pytree as pytree

    from segdeploy.safety import CodeProblem, check_generated_python

    namespace = {"torch": torch, "fx_pytree": fx_pytree, "pytree": pytree}
    if problem is None:
        check_generated_python(src, namespace)
    else:
        with pytest.raises(CodeProblem, match=problem.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
            check_generated_python(src, namespace)


def test_shape_expressions_may_only_be_sympy_arithmetic():
    import sympy
    from torch.utils._sympy.functions import FloorDiv

    from segdeploy.safety import Refused, restricted_pt2_load

    with restricted_pt2_load() as guard:
        e = sympy.sympify("Max(1, FloorDiv(s0, 2))*s1 + 3", locals={"FloorDiv": FloorDiv})
        assert e.free_symbols == {sympy.Symbol("s0"), sympy.Symbol("s1")}
        for bad in ("exec('1')", "S.__class__", "__import__('os')", "lambdify(s0, s0)", "Function('f')(s0)"):
            with pytest.raises(Refused, match="a shape expression"):
                sympy.sympify(bad)
    assert guard.refusal is not None
    assert sympy.sympify("lambdify(x, x)") is not None  # restored after the block
