"""`segdeploy precision EXPORT_DIR MODEL --int8|--fp16 ...`: lower an existing export without re-exporting.

The same stage `segdeploy export MODEL --int8 ...` runs after exporting; this command is for trying another
calibration method, set or budget on a bundle that is already exported. MODEL is the PyTorch reference
(the file given to `segdeploy export`); it must be the model the manifest was made from (its hash is
compared with the manifest's ``source.sha256``), so the accuracy is measured against the right network.
Exit codes: 0 ok, 1 error, 2 usage, 3 the accuracy budget was not met.
"""

from __future__ import annotations

import json

import click

from segdeploy.errors import UsageError
from segdeploy.precision.cli_options import precision_options, run_from_cli, summary_dict


@click.command("precision")
@click.argument("export_dir", type=click.Path(exists=True, file_okay=False, path_type=str))
@click.argument("model_file", required=False, type=click.Path(dir_okay=False, path_type=str))
@click.option("--model", "factory", metavar="PKG.MODULE:FACTORY", help="Importable factory (instead of MODEL_FILE).")
@click.option("--weights", type=click.Path(path_type=str), help="State dict for --model.")
@click.option("--trust-pickle", is_flag=True, help="Allow a pickled nn.Module (unpickling runs code from the file).")
@click.option("--output", "output_sel", metavar="NAME|INDEX", help="Which model output is the score map (as given to export).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")
@click.option("-q", "--quiet", is_flag=True, help="No progress lines.")
@precision_options
def precision_command(export_dir, model_file, factory, weights, trust_pickle, output_sel, as_json, quiet, precision):
    """Calibrate, lower to INT8 Q/DQ and/or FP16, and check accuracy on the CPU, for EXPORT_DIR."""
    from segdeploy.export.probe import probe_model
    from segdeploy.load import load_model
    from segdeploy.manifest import onnx_profile_of, read_manifest

    if (model_file is None) == (factory is None):
        raise UsageError("give exactly one of MODEL_FILE or --model PKG.MODULE:FACTORY (the PyTorch reference)")
    if not (precision.get("int8") or precision.get("fp16")):
        raise UsageError("nothing to do: give --int8 and/or --fp16")
    doc = read_manifest(export_dir)
    lm = load_model(model_file if factory is None else factory, weights=weights, trust_pickle=trust_pickle, output=output_sel)
    want = doc["source"].get("sha256")
    if want and lm.source_sha256 != want:
        raise UsageError(
            f"{model_file or factory} is not the model {export_dir} was exported from (hash differs from the "
            "manifest's source.sha256); pass the same model, or re-export"
        )
    probe_model(lm, onnx_profile_of(doc).opt)  # applies the output selection to lm.module
    res = run_from_cli(export_dir, lm, quiet=quiet, as_json=as_json, **precision)
    if as_json:
        click.echo(json.dumps(summary_dict(res), indent=2, sort_keys=True))
