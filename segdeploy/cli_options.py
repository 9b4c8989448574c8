"""Option groups shared by the commands, so the same option means the same thing everywhere.

* :func:`model_options` -- where the PyTorch model comes from: ``MODEL_FILE`` (or ``--reference`` on
  `check`) | ``--model PKG.MODULE:FACTORY`` ``--model-arg K=V`` ``--weights FILE``; ``--trust-pickle``;
  ``--output NAME|INDEX``. The command receives one :class:`ModelArgs` as ``model``.
* :func:`output_options` -- ``--json`` (one JSON result document on stdout, :mod:`segdeploy.result`, printed
  for failures and tripped gates too) and ``-q/--quiet`` (no progress on stderr). The command receives
  ``as_json`` and ``quiet``.

Naming rules: ``--out DIR`` is always a directory segdeploy owns (export, bundle); ``--report FILE`` is always
a JSON report file and ``--html FILE`` an HTML report file.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import click

from segdeploy.errors import UsageError


def parse_model_args(items: tuple[str, ...]) -> dict[str, Any]:
    """``KEY=VALUE`` strings -> kwargs; VALUE is int, float, true/false, none, else the string itself."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, val = item.partition("=")
        if not sep or not key.strip().isidentifier():
            raise UsageError(f"--model-arg {item!r} must be KEY=VALUE with KEY a Python identifier")
        v: object = val
        low = val.lower()
        if low in ("true", "false"):
            v = low == "true"
        elif low in ("none", "null"):
            v = None
        else:
            for conv in (int, float):
                try:
                    v = conv(val)
                    break
                except ValueError:
                    pass
        out[key.strip()] = v
    return out


@dataclass(frozen=True)
class ModelArgs:
    """The model group's values; :meth:`validate` checks them (cheap), :meth:`load` loads the model."""

    file: str | None
    factory: str | None
    model_args: tuple[str, ...]
    weights: str | None
    trust_pickle: bool
    output: str | None
    file_option: str = "MODEL_FILE"

    def validate(self) -> "ModelArgs":
        if (self.file is None) == (self.factory is None):
            raise UsageError(f"give exactly one of {self.file_option} or --model PKG.MODULE:FACTORY")
        if self.model_args and self.factory is None:
            raise UsageError("--model-arg applies only with --model PKG.MODULE:FACTORY")
        if self.weights is not None and self.factory is None:
            raise UsageError(f"--weights applies only with --model PKG.MODULE:FACTORY; a {self.file_option} carries its "
                             "own weights")
        parse_model_args(self.model_args)
        return self

    @property
    def source(self) -> str:
        return self.factory if self.factory is not None else self.file

    def load_kwargs(self) -> dict[str, Any]:
        return {"factory": self.factory, "weights": self.weights, "trust_pickle": self.trust_pickle,
                "output": self.output, "factory_kwargs": parse_model_args(self.model_args)}

    def load(self):
        from segdeploy.load import load_model

        return load_model(None if self.factory else self.file, **self.load_kwargs())


def model_options(reference: bool = False):
    """Decorator: the model group. ``reference=True`` (check) names the file option ``--reference``."""

    def deco(f):
        @functools.wraps(f)
        def wrapper(*args, **kwargs):
            file = kwargs.pop("reference" if reference else "model_file")
            m = ModelArgs(file, kwargs.pop("factory"), tuple(kwargs.pop("model_args")), kwargs.pop("weights"),
                          kwargs.pop("trust_pickle"), kwargs.pop("output_sel"),
                          "--reference" if reference else "MODEL_FILE")
            return f(*args, model=m, **kwargs)

        opts = [
            click.option("--model", "factory", metavar="PKG.MODULE:FACTORY",
                         help="Importable factory returning an nn.Module (instead of "
                              f"{'--reference' if reference else 'MODEL_FILE'})."),
            click.option("--model-arg", "model_args", multiple=True, metavar="KEY=VALUE",
                         help="Keyword argument for --model's factory (repeatable; int/float/bool/None, else string)."),
            click.option("--weights", type=click.Path(dir_okay=False, path_type=str),
                         help="State dict (.pt/.pth, loaded weights-only) or .safetensors for --model."),
            click.option("--trust-pickle", is_flag=True,
                         help="Allow pickled content (torch.save(model), pickled .pt2 entries): unpickling runs code."),
            click.option("--output", "output_sel", metavar="NAME|INDEX",
                         help="Which model output is the score map (dict key or tuple index)."),
        ]
        if reference:
            opts.insert(0, click.option("--reference", metavar="MODEL",
                                        help="Reference model: .pt2, TorchScript, pickled module (with --trust-pickle) "
                                             "or an .onnx file."))
        for opt in reversed(opts):
            wrapper = opt(wrapper)
        if not reference:
            wrapper = click.argument("model_file", required=False, type=click.Path(dir_okay=False, path_type=str))(wrapper)
        return wrapper

    return deco


def output_options(f):
    """Decorator: ``--json`` and ``-q/--quiet``."""
    f = click.option("-q", "--quiet", is_flag=True, help="No progress lines on stderr.")(f)
    f = click.option("--json", "as_json", is_flag=True,
                     help="Print the JSON result document on stdout (also on failure and tripped gates).")(f)
    return f
