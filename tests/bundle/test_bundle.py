"""`segdeploy bundle`: contents, hashes, build.sh (syntax, shellcheck, the trtexec line per TensorRT version),
archive, plugin sources only when needed, refusals. Nothing here builds or runs an engine (no TensorRT, no GPU)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from segdeploy.cli import main
from segdeploy.exportdir import ExportDir

ROOT = Path(__file__).resolve().parents[2]
VAL = ROOT / "calibration" / "shapes" / "val"


@pytest.fixture(scope="module")
def example(tmp_path_factory):
    """The shipped example exported with --int8 --fp16 (validation split recorded by the precision stage)."""
    d = tmp_path_factory.mktemp("bx") / "shapes"
    rc = main(["export", str(ROOT / "examples" / "shapes_unet.pt2"), "--out", str(d), "--shape", "1x3x128x128",
               "--int8", "--fp16", "--calib", str(ROOT / "calibration" / "shapes" / "calib"), "--calib-size", "8", "-q"])
    assert rc == 0
    return d


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def test_bundle_contents_and_hashes(example, tmp_path, capsys):
    out = tmp_path / "b" / "shapes-orin"
    assert main(["bundle", str(example), "--out", str(out), "--json", "-q"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["ok"] and res["stages"]["bundle"]["precisions"] == ["fp32", "fp16", "int8"]
    doc = json.loads((out / "bundle.json").read_text())
    files = {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()}
    assert files == set(doc["files"]) | {"bundle.json"}
    for rel, meta in doc["files"].items():
        assert _sha(out / rel) == meta["sha256"], rel
    # model/: exactly the export's files, a valid export directory, byte-identical copies
    ed = ExportDir.open(out / "model")
    src = ExportDir.open(example)
    assert set(ed.files) == set(src.files) and all((out / "model" / n).read_bytes() == (example / n).read_bytes() for n in ed.files)
    # the runtime sources, the TensorRT detection, no plugins (the U-Net needs none), samples + references
    assert (out / "runtime" / "CMakeLists.txt").is_file() and (out / "runtime" / "include" / "segdeploy" / "segmenter.h").is_file()
    assert (out / "tools" / "detect_trt.sh").stat().st_mode & 0o111 and not (out / "plugins").exists()
    assert len(doc["samples"]) == 4
    # the reference maps are the FP32 ONNX's class maps of the sample images
    import onnxruntime as ort

    from segdeploy.datasets.preprocess import restore_prediction, to_batch

    sess = ort.InferenceSession(str(out / "model" / "model.onnx"), providers=["CPUExecutionProvider"])
    for s in doc["samples"]:
        img = np.asarray(Image.open(out / s["image"]).convert("RGB"))
        x, infos = to_batch([img], src.preprocess, src.profile)
        want = restore_prediction(sess.run(None, {"input": x})[0][0].argmax(0), infos[0])
        assert np.array_equal(np.asarray(Image.open(out / s["reference"])), want)
    # calibration cache with the header of the default line for Orin (TensorRT 10.3)
    assert (out / "calib" / "model.calib.cache").read_text().splitlines()[0] == "TRT-100300-EntropyCalibration2"
    # thresholds: FP32 fixed, FP16/INT8 from the CPU-measured agreement minus a margin
    thr = doc["smoke_test"]["thresholds"]
    acc = src.section("precision")["int8"]["accuracy"]["levels"]["disable"]["agreement_vs_reference"]
    assert thr["fp32"] == 99.5 and thr["int8"] == pytest.approx(max(90.0, 100 * acc - 1.0), abs=0.01)
    # the archive holds the same tree
    with tarfile.open(tmp_path / "b" / "shapes-orin.tar.gz") as tar:
        names = {n for n in tar.getnames() if "." in Path(n).name or n.count("/") > 1}
        assert {f"shapes-orin/{f}" for f in files} <= set(tar.getnames())
        assert all(m.uid == 0 and m.mtime == 0 for m in tar.getmembers())
        del names


def test_build_sh_syntax_shellcheck_and_trtexec_lines(example, tmp_path):
    out = tmp_path / "b"
    assert main(["bundle", str(example), "--out", str(out), "--target", "orin", "--no-archive", "-q"]) == 0
    sh = (out / "build.sh").read_text()
    assert subprocess.run(["bash", "-n", str(out / "build.sh")]).returncode == 0
    if shutil.which("shellcheck"):
        r = subprocess.run(["shellcheck", str(out / "build.sh"), str(out / "tools" / "detect_trt.sh")],
                           capture_output=True, text=True)
        assert r.returncode == 0, r.stdout
    lines = {ln.strip().split(")")[0].strip('"'): ln for ln in sh.splitlines() if ln.strip().startswith('"') and ":" in ln}
    assert set(lines) == {f"{v}:{p}" for v in ("8.6", "10.3", "10.x", "11.x") for p in ("fp32", "fp16", "int8")}
    shapes = "--minShapes=input:1x3x64x64 --optShapes=input:1x3x128x128 --maxShapes=input:8x3x256x256"
    assert all(shapes in ln and "--skipInference" in ln for ln in lines.values())
    assert "--fp16" in lines["8.6:fp16"] and "--int8" in lines["8.6:int8"] and "--stronglyTyped" not in lines["8.6:int8"]
    for v in ("10.3", "10.x"):
        assert "--stronglyTyped" in lines[f"{v}:int8"] and "--int8" not in lines[f"{v}:int8"]
    for p in ("fp32", "fp16", "int8"):
        assert not any(f in lines[f"11.x:{p}"] for f in ("--fp16", "--int8", "--calib", "--stronglyTyped"))
    assert "--onnx=model/model.int8.onnx" in lines["11.x:int8"] and "--saveEngine=engines/model.int8.engine" in lines["11.x:int8"]
    assert 'ARCH=${ARCH:-87}' in sh


def test_thor_and_int8_implicit(example, tmp_path):
    out = tmp_path / "thor"
    assert main(["bundle", str(example), "--out", str(out), "--target", "thor", "--precision", "int8,int8-implicit",
                 "--no-archive", "-q"]) == 0
    sh = (out / "build.sh").read_text()
    doc = json.loads((out / "bundle.json").read_text())
    assert doc["target"]["cuda_arch"] == "110" and set(doc["target"]["trt_lines"]) == {"10.x", "11.x"}
    assert "--calib=build/model.calib.cache" in doc["trtexec"]["10.x:int8-implicit"]["command"]
    assert doc["trtexec"]["11.x:int8-implicit"]["supported"] is False  # TensorRT 11 removed implicit INT8
    assert "TRT-$CODE-EntropyCalibration2" in sh  # build.sh re-stamps the cache for the detected version
    assert not any(k.startswith("8.6") for k in doc["trtexec"])


def test_plugin_model_bundles_the_plugin_sources(tmp_path, capsys):
    from segdeploy.export import ExportOptions
    from segdeploy.pipeline import export_model
    from segdeploy.zoo import create

    import torch

    torch.manual_seed(0)  # a fixed random SegNet: some random draws make dynamo's graph disagree (issue 19 studies why)
    exp = tmp_path / "segnet"
    export_model(create("segnet", num_classes=4), exp, ExportOptions(shape="1x3x64x64", max_batch=2))
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    for i in range(2):
        Image.fromarray(np.random.default_rng(i).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(imgs / f"s{i}.png")
    out = tmp_path / "b"
    assert main(["bundle", str(exp), "--out", str(out), "--samples", str(imgs), "--no-archive", "-q"]) == 0
    doc = json.loads((out / "bundle.json").read_text())
    assert doc["needs_plugins"] and (out / "plugins" / "CMakeLists.txt").is_file()
    assert (out / "plugins" / "csrc" / "maxunpool" / "maxunpool.cu").is_file() and (out / "plugins" / "trt").is_dir()
    assert "--onnx=model/model.trt.onnx" in doc["trtexec"]["11.x:fp32"]["command"]
    assert "--dynamicPlugins=build/plugins/lib/libsegdeploy_trt_plugins.so" in doc["trtexec"]["11.x:fp32"]["command"]
    assert doc["trtexec"]["8.6:fp32"]["supported"] is False and "8.6" in doc["trtexec"]["8.6:fp32"]["reason"]
    r = subprocess.run(["cmake", "-S", str(out / "plugins"), "-B", str(tmp_path / "pb"), "-DSEGDEPLOY_CUDA_ARCH=87"],
                       capture_output=True, text=True) if shutil.which("cmake") and shutil.which("nvcc") else None
    if r is not None:  # the bundled plugin project configures on its own (kernels library; TensorRT absent here)
        assert r.returncode == 0, r.stdout + r.stderr


def test_refusals_are_one_line(example, tmp_path, capsys):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("x")
    for argv, code, match in [
        (["bundle", str(example), "--out", str(tmp_path / "mine")], 1, "not empty and not a segdeploy bundle"),
        (["bundle", str(example), "--out", str(tmp_path / "x"), "--target", "thor", "--trt-version", "8.6"], 2,
         "does not run on Jetson Thor"),
        (["bundle", str(example), "--out", str(tmp_path / "x"), "--precision", "bf16"], 2, "unknown --precision 'bf16'"),
        (["bundle", str(example), "--out", str(example / "b")], 2, "inside the export directory"),
        (["bundle", str(tmp_path / "nope"), "--out", str(tmp_path / "x")], 1, "does not exist"),
    ]:
        assert main(argv) == code, argv
        err = capsys.readouterr().err
        assert match in err and err.count("\n") == 1, err
    assert (tmp_path / "mine").exists() and not (tmp_path / "x").exists()
    assert sorted(p.name for p in (tmp_path / "mine").iterdir()) == ["thesis.tex"]


def test_rebundling_replaces_an_earlier_bundle(example, tmp_path):
    out = tmp_path / "b"
    assert main(["bundle", str(example), "--out", str(out), "--precision", "fp32", "--no-archive", "-q"]) == 0
    assert main(["bundle", str(example), "--out", str(out), "--precision", "int8", "--no-archive", "-q"]) == 0
    assert json.loads((out / "bundle.json").read_text())["precisions"] == ["int8"]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".b.staging")] == []


def test_a_killed_run_s_leftovers_are_recovered(example, tmp_path):
    """The bundle publishes through the export directory's StagedDirectory: a publish cut between its two renames
    (only the marked .b.old-* left) is restored before the new run, stale staging and archive temp files of ours go."""
    from segdeploy import safefs

    out = tmp_path / "b"
    assert main(["bundle", str(example), "--out", str(out), "--precision", "fp32", "--no-archive", "-q"]) == 0
    fd = os.open(out, os.O_RDONLY | os.O_DIRECTORY)
    safefs.mark_work_dir(fd)
    os.close(fd)
    os.rename(out, tmp_path / ".b.old-dead")  # what a publish killed between its two renames leaves
    pfd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    os.close(safefs.make_work_dir(pfd, ".b.staging-cafe", 0o755))  # a killed run's staging
    os.close(pfd)
    (tmp_path / ".b.tar.gz.tmp-1-abc").write_bytes(b"partial")  # a killed run's archive
    assert main(["bundle", str(example), "--out", str(out), "--precision", "int8", "-q"]) == 0
    assert json.loads((out / "bundle.json").read_text())["precisions"] == ["int8"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".b.lock", "b", "b.tar.gz"]
    assert safefs.WORK_MARKER not in os.listdir(out)


# ------------------------------------------------------------------------------------------------ build.sh, run here
BASH = shutil.which("bash") or "/bin/bash"


def _sandbox_bin(path: Path, tools=("sort", "tail", "sed", "grep", "tr", "mkdir", "cp", "basename", "dirname", "nproc",
                                    "cat", "sh", "awk", "head", "env")) -> Path:
    """A PATH directory holding only links to the named system tools (no nvcc, no python3, no cmake)."""
    path.mkdir(parents=True)
    for tool in tools:
        real = shutil.which(tool)
        assert real, f"{tool} is not installed"
        (path / tool).symlink_to(real)
    return path


def _script(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n" + text)
    path.chmod(0o755)
    return path


def _resolve_nvcc_fn(build_sh: str) -> str:
    import re

    m = re.search(r"^resolve_nvcc\(\) \{\n.*?^\}\n", build_sh, re.M | re.S)
    assert m, "build.sh defines no resolve_nvcc()"
    return m.group(0)


def test_build_sh_finds_nvcc_where_jetpack_puts_it(example, tmp_path):
    """build.sh's resolve_nvcc, run with bash in a sandbox PATH: CUDACXX (path or name; a wrong one is an error,
    never replaced), then nvcc on PATH, $CUDA_PATH/bin, ROOT/cuda/bin (JetPack's /usr/local/cuda/bin, off PATH),
    the newest ROOT/cuda-*/bin; a non-executable nvcc is skipped."""
    out = tmp_path / "b"
    assert main(["bundle", str(example), "--out", str(out), "--precision", "fp32", "--no-archive", "-q"]) == 0
    fn = _resolve_nvcc_fn((out / "build.sh").read_text())
    sandbox = _sandbox_bin(tmp_path / "sandbox")
    root = tmp_path / "usr-local"
    fake = "echo 'Cuda compilation tools, release 12.6, V12.6.68'\n"

    def resolve(path_dirs=(), **env) -> tuple[int, str]:
        full = {"PATH": ":".join([*map(str, path_dirs), str(sandbox)]), "SEGDEPLOY_CUDA_SEARCH_ROOT": str(root), **env}
        r = subprocess.run([BASH, "-c", fn + "resolve_nvcc"], env=full, capture_output=True, text=True)
        return r.returncode, r.stdout.strip()

    assert resolve() == (1, "")  # nothing anywhere
    for v in ("12.2", "12.10", "12.6"):  # versioned toolkits only: the newest by version, not by name
        _script(root / f"cuda-{v}" / "bin" / "nvcc", fake)
    _script(root / "cuda-13.0" / "bin" / "nvcc", fake).chmod(0o644)  # not executable: skipped
    assert resolve() == (0, str(root / "cuda-12.10" / "bin" / "nvcc"))
    jetpack = _script(root / "cuda" / "bin" / "nvcc", fake)  # JetPack: /usr/local/cuda/bin, not on PATH
    assert resolve() == (0, str(jetpack))
    cuda_path = _script(tmp_path / "opt" / "cuda" / "bin" / "nvcc", fake)
    assert resolve(CUDA_PATH=str(tmp_path / "opt" / "cuda")) == (0, str(cuda_path))
    on_path = _script(tmp_path / "pathbin" / "nvcc", fake)
    assert resolve([on_path.parent], CUDA_PATH=str(tmp_path / "opt" / "cuda")) == (0, str(on_path))
    assert resolve([on_path.parent], CUDACXX=str(jetpack)) == (0, str(jetpack))  # CUDACXX first
    assert resolve([on_path.parent], CUDACXX="nvcc") == (0, str(on_path))  # a command name is looked up
    assert resolve([on_path.parent], CUDACXX=str(tmp_path / "missing" / "nvcc"))[0] == 2
    assert resolve(CUDACXX=str(root / "cuda-13.0" / "bin" / "nvcc"))[0] == 2  # not executable: an error, not skipped


def _fake_device(tmp_path: Path, bundle: Path) -> dict[str, str]:
    """Stand-ins for what build.sh drives on a device: TensorRT 10.3 for detect_trt.sh, trtexec (writes the engine),
    cmake (records its arguments; `--build build/runtime` makes a segdeploy_infer that records its arguments and
    reports 100 % agreement; FAIL_CONFIGURE=1 makes the runtime's configure step fail with a long log), and nvcc
    only in ROOT/cuda/bin, off PATH, as on JetPack. Returns build.sh's environment."""
    calls = tmp_path / "calls"
    calls.mkdir()
    bin_dir = _sandbox_bin(tmp_path / "sandbox")
    root = tmp_path / "usr-local"
    _script(root / "cuda" / "bin" / "nvcc", "echo 'Cuda compilation tools, release 12.6, V12.6.68'\n")
    python = _script(tmp_path / "fake" / "python3", 'case "$2" in *"import tensorrt;"*) echo 10.3.0.26 ;; *) exit 1 ;; esac\n')
    trtexec = _script(tmp_path / "fake" / "trtexec", f'echo "$@" >> {calls}/trtexec\n'
                      'for a in "$@"; do case "$a" in --saveEngine=*) : > "${a#--saveEngine=}" ;; esac; done\n')
    infer = (f'#!/bin/sh\necho "$@" >> {calls}/segdeploy_infer\necho "agreement     100.000% (16384 of 16384 pixels)"\n'
             ': > "$4"\n')
    _script(bin_dir / "cmake", f'echo "CUDACXX=$CUDACXX $*" >> {calls}/cmake\n'
            'case "$*" in\n'
            '  "-S runtime "*) if [ "${FAIL_CONFIGURE:-0}" = 1 ]; then i=0; while [ $i -lt 60 ]; do echo "-- line $i"; i=$((i+1)); done;\n'
            '                  echo "CMake Error: segdeploy runtime: nlohmann-json (nlohmann/json.hpp) not found"; exit 1; fi ;;\n'
            '  "--build build/runtime"*) mkdir -p build/runtime; cat > build/runtime/segdeploy_infer <<\'EOF_INFER\'\n'
            f'{infer}EOF_INFER\n'
            '                           chmod +x build/runtime/segdeploy_infer ;;\n'
            'esac\n')
    (bin_dir / "chmod").symlink_to(shutil.which("chmod"))
    return {"PATH": str(bin_dir), "PYTHON": str(python), "TRTEXEC": str(trtexec), "SEGDEPLOY_CUDA_SEARCH_ROOT": str(root),
            "SEGDEPLOY_CUDA_ARCH": "87", "HOME": str(tmp_path), "JOBS": "2"}


def test_build_sh_runs_through_with_stand_ins(example, tmp_path):
    """The whole build.sh on this machine with stand-ins for the device's tools: nvcc found in /usr/local/cuda/bin
    (off PATH) reaches every CMake configure step, the runner is configured before any engine is built, a
    version-compatible bundle builds with --versionCompatible and runs its smoke test with --trust-host-code; a
    failing CMake step shows its log's tail and ends with one error line."""
    out = tmp_path / "b"
    assert main(["bundle", str(example), "--out", str(out), "--precision", "fp32", "--num-samples", "2",
                 "--version-compatible", "--no-archive", "-q"]) == 0
    doc = json.loads((out / "bundle.json").read_text())
    assert doc["version_compatible"] is True and "--versionCompatible" in doc["trtexec"]["10.3:fp32"]["command"]
    env = _fake_device(tmp_path, out)
    r = subprocess.run([BASH, str(out / "build.sh")], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    nvcc = tmp_path / "usr-local" / "cuda" / "bin" / "nvcc"
    assert f"[build.sh] CUDA compiler {nvcc} (release 12.6)" in r.stdout and "smoke test passed" in r.stdout
    cmake = (tmp_path / "calls" / "cmake").read_text().splitlines()
    assert cmake[0].startswith(f"CUDACXX={nvcc} -S runtime -B build/runtime -DCMAKE_CUDA_COMPILER={nvcc}"), cmake
    assert "-DSEGDEPLOY_REQUIRE_PNG=ON" in cmake[0] and cmake[1].startswith(f"CUDACXX={nvcc} --build build/runtime")
    trtexec = (tmp_path / "calls" / "trtexec").read_text()
    assert "--versionCompatible" in trtexec and "--saveEngine=engines/model.fp32.engine" in trtexec
    runs = (tmp_path / "calls" / "segdeploy_infer").read_text().splitlines()
    assert len(runs) == 2 and all("--trust-host-code" in run and "--compare samples/reference/" in run for run in runs)
    # the same bundle without --version-compatible: no --trust-host-code anywhere
    plain = tmp_path / "plain"
    assert main(["bundle", str(example), "--out", str(plain), "--precision", "fp32", "--num-samples", "1",
                 "--no-archive", "-q"]) == 0
    sh = (plain / "build.sh").read_text()
    assert "VERSION_COMPATIBLE=0" in sh and "--versionCompatible" not in sh
    # a failing configure step: its log's tail on stdout, one error line on stderr, no engine built
    (tmp_path / "calls" / "trtexec").unlink()
    r = subprocess.run([BASH, str(plain / "build.sh")], env={**env, "FAIL_CONFIGURE": "1"}, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and r.stderr.startswith("error: configuring the C++ runner"), r.stderr
    assert "nlohmann-json (nlohmann/json.hpp) not found" in r.stdout and "-- line 59" in r.stdout and "-- line 5\n" not in r.stdout
    assert not (tmp_path / "calls" / "trtexec").exists()
    # no nvcc anywhere: one line naming CUDACXX
    r = subprocess.run([BASH, str(plain / "build.sh")], env={**env, "SEGDEPLOY_CUDA_SEARCH_ROOT": str(tmp_path / "none")},
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "nvcc not found" in r.stderr and "CUDACXX=" in r.stderr
