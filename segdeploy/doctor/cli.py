"""`segdeploy doctor [--json] [--plugins PATH]`: report this machine's toolchain and what it can do.

Contract: prints the table (or the JSON report, schema ``segdeploy.doctor`` v1, with ``--json``) and exits 0
whenever the report could be made -- doctor is informational, a missing or failing component is part of
the report, never an error. Exit 1 only when the report itself could not be built (a segdeploy bug),
with a one-line message.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from segdeploy.plugins.locate import DEFAULT_BUILD_DIR, PLUGIN_LIBRARY, PLUGINS_ENV


@click.command("doctor")
@click.option("--json", "as_json", is_flag=True, help="Print the segdeploy.result document; the report (schema segdeploy.doctor v1) is stages.doctor.")
@click.option("--plugins", type=click.Path(path_type=Path), default=None,
              help=f"TensorRT plugin library (file, or a build dir holding {PLUGIN_LIBRARY}) "
                   f"[default: ${PLUGINS_ENV}, then {DEFAULT_BUILD_DIR}].")
def doctor_command(as_json: bool, plugins: Path | None) -> None:
    """Versions, CUDA, GPU, TensorRT, Jetson/JetPack, DLA, plugin library, and what this machine can do."""
    from segdeploy.errors import SegdeployError

    try:
        from segdeploy.doctor.render import render_table
        from segdeploy.doctor.report import collect

        report = collect(plugins=plugins)
        if as_json:
            from segdeploy.result import result_doc

            doc = result_doc("doctor", stages={"doctor": report})
            json.dumps(doc, sort_keys=True, default=str)  # unserialisable: a doctor bug, reported below
        else:
            text = render_table(report)
    except Exception as e:  # probes never raise; anything here is a bug in doctor itself
        msg = " ".join(str(e).split())
        raise SegdeployError(f"doctor could not build its report ({type(e).__name__}: {msg}); "
                             "report this as a segdeploy bug with the output of `segdeploy doctor --json`") from e
    if as_json:
        from segdeploy.result import echo_json

        echo_json(doc)  # the entry point prints it as the only thing on stdout
    else:
        click.echo(text)
