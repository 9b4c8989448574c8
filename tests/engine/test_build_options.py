"""The engine-build option group (segdeploy.engine.cli_options): parsing into BuildArgs -> BuildRequest, reuse on
another command (exclude, help prefix, "given without --engine"), and `segdeploy build` using it. No files."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from segdeploy.engine.cli_options import OPTION_NAMES, BuildArgs, engine_build_options
from segdeploy.engine.request import BuildRequest
from segdeploy.errors import UsageError

ALL = ["--precision", "--int8-implicit", "--trt-target", "--plugins", "--workspace", "--opt-level", "--dla-core",
       "--no-gpu-fallback", "--hardware-compat", "--version-compatible", "--rewrite-calib-header", "--timing-cache",
       "--no-timing-cache", "--verbose"]


def _command(**deco_kwargs):
    seen = {}

    @click.command()
    @click.option("--engine", is_flag=True)
    @engine_build_options(**deco_kwargs)
    def cmd(engine, build):
        seen["engine"], seen["build"] = engine, build

    return cmd, seen


def _parse(args, **deco_kwargs) -> BuildArgs:
    cmd, seen = _command(**deco_kwargs)
    result = CliRunner().invoke(cmd, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return seen["build"]


def test_the_group_has_the_fourteen_build_options():
    assert list(OPTION_NAMES.values()) == ALL
    cmd, _ = _command()
    names = [o for p in cmd.params for o in p.opts]
    assert [n for n in names if n != "--engine"] == ALL


def test_defaults_parse_into_the_default_request():
    args = _parse([])
    assert args == BuildArgs() and args.given() == ()
    assert args.request() == BuildRequest.from_cli() == BuildRequest()


def test_every_option_reaches_the_request(tmp_path):
    lib = tmp_path / "lib.so"
    lib.write_bytes(b"x")
    args = _parse(["--precision", "fp16,int8", "--int8-implicit", "--trt-target", "10.3", "--plugins", str(lib),
                   "--workspace", "512", "--opt-level", "4", "--dla-core", "1", "--no-gpu-fallback",
                   "--hardware-compat", "none", "--rewrite-calib-header", "--timing-cache", str(tmp_path / "tc"),
                   "--verbose"])
    r = args.request()
    assert r.precisions == ("fp16", "int8", "int8-implicit") and r.int8_implicit and r.trt_target == "10.3"
    assert r.plugin_library == str(lib) and r.workspace_mib == 512 and r.optimization_level == 4
    assert r.dla_core == 1 and r.gpu_fallback is False and r.hardware_compatibility == "none"
    assert r.rewrite_calib_header and r.timing_cache_dir == str(tmp_path / "tc") and r.use_timing_cache and r.verbose
    assert set(args.given()) == set(ALL) - {"--no-timing-cache", "--version-compatible"}
    r = _parse(["--version-compatible", "--no-timing-cache", "--hardware-compat", "same-cc"]).request()
    assert r.version_compatible and not r.use_timing_cache and r.hardware_compatibility == "same-compute-capability"


@pytest.mark.parametrize("args, message", [
    (["--precision", "bf16"], "'bf16'"),
    (["--opt-level", "9"], "--opt-level must be 0..5"),
    (["--timing-cache", "x", "--no-timing-cache"], "--timing-cache and --no-timing-cache contradict"),
    (["--no-gpu-fallback"], "--no-gpu-fallback applies only with --dla-core N"),
    (["--trt-target", "12"], "unknown TensorRT target"),
])
def test_bad_values_are_usage_errors_when_the_command_parses(args, message):
    build = _parse(args)  # click accepts them; the command parses inside its own error handling
    with pytest.raises(UsageError, match=message):
        build.request()


def test_click_rejects_what_is_not_a_value_at_all():
    cmd, _ = _command()
    result = CliRunner().invoke(cmd, ["--hardware-compat", "turing"])
    assert result.exit_code == 2 and "turing" in result.output


def test_reuse_on_a_command_with_an_optional_build():
    """`export --engine` style: exclude options the command has, prefix the help, refuse options without the flag."""
    cmd, _ = _command(exclude=("--verbose",), help_prefix="With --engine: ")
    names = [o for p in cmd.params for o in p.opts]
    assert "--verbose" not in names and "--precision" in names
    help_text = CliRunner().invoke(cmd, ["--help"]).output
    assert "With --engine: Engines to build" in help_text
    assert _parse([], exclude=("--verbose",)).request_if(False) is None
    assert _parse(["--precision", "fp16"], exclude=("--verbose",)).request_if(True).precisions == ("fp16",)
    with pytest.raises(UsageError, match=r"^--trt-target/--plugins given without --engine; add --engine$"):
        _parse(["--trt-target", "10.3", "--plugins", "x.so"]).request_if(False)
    with pytest.raises(ValueError, match="not engine-build options: --fp16"):
        engine_build_options(exclude=("--fp16",))


def test_no_collision_with_a_command_parameter_of_the_same_name():
    """`export` has a precision group passing ``precision=``; this group's --precision must not collide with it."""
    seen = {}

    @click.command()
    @click.option("--fp16", "precision", is_flag=True)
    @engine_build_options()
    def cmd(precision, build):
        seen.update(precision=precision, build=build)

    assert CliRunner().invoke(cmd, ["--fp16", "--precision", "int8"], catch_exceptions=False).exit_code == 0
    assert seen["precision"] is True and seen["build"].precision == "int8"


def test_segdeploy_build_uses_the_group():
    from segdeploy.engine.cli import build_command

    names = [o for p in build_command.params for o in p.opts]
    assert all(n in names for n in ALL) and "EXPORT_DIR" not in names
