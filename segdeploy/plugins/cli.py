"""`segdeploy plugins ...`: build the CUDA kernels and the TensorRT plugin library.

Contract: options are parsed here and passed to :func:`segdeploy.plugins.build.build_plugins`; the command
prints where the libraries went (or JSON with --json). Errors are SegdeployErrors (one line, exit 1/2).
"""

from __future__ import annotations

from pathlib import Path

import click


@click.group("plugins")
def plugins() -> None:
    """CUDA plugins (MaxPool-with-indices, MaxUnpool, RoiAlign): build and inspect."""


@plugins.command("build")
@click.option("--cuda-arch", default="native", show_default=True,
              help="native (the GPUs present; a generic list without a GPU), or e.g. 87 (Jetson Orin), "
                   "110 (Jetson Thor, CUDA 13), '80,86,90'.")
@click.option("--tensorrt-root", type=click.Path(path_type=Path), default=None,
              help="TensorRT prefix (include/NvInfer.h); the plugin library is built only when found.")
@click.option("--build-dir", type=click.Path(path_type=Path), default=None,
              help="CMake build directory [default: build/segdeploy-plugins].")
@click.option("--source-dir", type=click.Path(path_type=Path), default=None,
              help="Plugin sources: a segdeploy checkout or a plugins directory [default: the ones installed with segdeploy].")
@click.option("--build-type", type=click.Choice(["Release", "RelWithDebInfo", "Debug"]), default="Release",
              show_default=True)
@click.option("--jobs", "-j", type=click.IntRange(min=1), default=None, help="Parallel compile jobs.")
@click.option("--host-reference", is_flag=True, help="Also build the CPU reference of the kernels (tests).")
@click.option("--nvcc", default=None, help="nvcc to use [default: $CUDACXX, PATH, /usr/local/cuda/bin/nvcc].")
@click.option("--json", "as_json", is_flag=True, help="Print the segdeploy.result document (the build under stages.plugins).")
def build_command(cuda_arch, tensorrt_root, build_dir, source_dir, build_type, jobs, host_reference, nvcc,
                  as_json) -> None:
    """Configure and build with CMake; report where the libraries went."""
    from segdeploy.errors import SegdeployError
    from segdeploy.plugins.build import BuildOptions, build_plugins
    from segdeploy.plugins.locate import DEFAULT_BUILD_DIR

    opts = BuildOptions(
        cuda_arch=cuda_arch,
        tensorrt_root=tensorrt_root,
        build_dir=build_dir if build_dir is not None else Path(DEFAULT_BUILD_DIR),
        source_dir=source_dir,
        build_type=build_type,
        jobs=jobs,
        host_reference=host_reference,
        nvcc=nvcc,
    )
    try:
        res = build_plugins(opts)
    except SegdeployError as e:
        if as_json:
            from segdeploy.result import echo_json, result_doc

            echo_json(result_doc("plugins build", error=e))
        raise
    info = {
        "build_dir": str(res.build_dir),
        "cuda_architectures": res.cuda_architectures,
        "kernels_library": str(res.kernels_library),
        "tensorrt_found": res.tensorrt_found,
        "plugin_library": str(res.plugin_library) if res.plugin_library else None,
        "host_reference_library": str(res.host_reference_library) if res.host_reference_library else None,
        "log": str(res.log),
        "notes": list(res.notes),
    }
    if as_json:
        from segdeploy.result import echo_json, result_doc

        echo_json(result_doc("plugins build", stages={"plugins": info}, notes=list(res.notes)))
        return
    click.echo(f"CUDA architectures: {res.cuda_architectures}")
    click.echo(f"kernels library:    {res.kernels_library}")
    if res.plugin_library:
        click.echo(f"TensorRT plugins:   {res.plugin_library}")
    elif res.tensorrt_found:
        click.echo("TensorRT plugins:   not built (TensorRT found, but no plugin library was produced; see the log)")
    else:
        click.echo("TensorRT plugins:   not built (TensorRT not found; pass --tensorrt-root)")
    for note in res.notes:
        click.echo(f"note:               {note}")
    if res.host_reference_library:
        click.echo(f"host reference:     {res.host_reference_library}")
    click.echo(f"log:                {res.log}")
