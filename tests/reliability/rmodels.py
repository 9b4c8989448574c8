"""Models and factories that misbehave on purpose (importable as ``rmodels:<name>`` in subprocesses)."""

from __future__ import annotations

import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F


class Tiny(nn.Module):
    """conv - pool - conv - upsample: spatial multiple 2, 3 classes."""

    def __init__(self, num_classes: int = 3):
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 3, padding=1)
        self.c2 = nn.Conv2d(8, num_classes, 3, padding=1)

    def forward(self, x):
        return F.interpolate(self.c2(F.max_pool2d(F.relu(self.c1(x)), 2)), scale_factor=2.0, mode="bilinear")


def tiny(num_classes: int = 3) -> nn.Module:
    torch.manual_seed(0)
    return Tiny(num_classes).eval()


def tiny_other() -> nn.Module:
    torch.manual_seed(7)
    return Tiny(3).eval()


class NanOut(Tiny):
    def forward(self, x):
        return super().forward(x) * float("nan")


def nan_model() -> nn.Module:
    return NanOut().eval()


class SquareOnly(Tiny):
    """Rebuilds a square patch grid like some transformers: any H != W fails in PyTorch."""

    def forward(self, x):
        n, c, h, w = x.shape
        side = int(round((h * w) ** 0.5))
        x = x.reshape(n, c, h * w).reshape(n, c, side, side)
        return super().forward(x)


def square_only() -> nn.Module:
    torch.manual_seed(0)
    return SquareOnly().eval()


class MinSize(Tiny):
    """Fails below 48 px (a pyramid head that pools too far), like smp's PAN below 256 px."""

    def forward(self, x):
        if x.shape[2] < 48 or x.shape[3] < 48:
            raise RuntimeError(f"input {x.shape[2]}x{x.shape[3]} is too small for the pyramid (need >= 48)")
        return super().forward(x)


def min_size() -> nn.Module:
    torch.manual_seed(0)
    return MinSize().eval()


def raises_value_error():
    raise ValueError("the config file says depth=-1")


def calls_exit():
    sys.exit(0)


def calls_os_exit():
    os._exit(0)


def raw_socket_download():
    """Connects through the C socket type directly (``import _socket``), past ``socket.socket``."""
    import _socket

    s = _socket.socket(_socket.AF_INET, _socket.SOCK_STREAM)
    s.settimeout(5)
    s.connect(("192.0.2.1", 443))  # TEST-NET-1: never routable
    return tiny()


def needs_hub_offline():
    """Returns a model only while the Hugging Face libraries are told to stay offline."""
    flags = {k: os.environ.get(k) for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE")}
    if set(flags.values()) != {"1"}:
        raise RuntimeError(f"offline flags not set: {flags}")
    return tiny()


def downloads():
    import urllib.request

    urllib.request.urlopen("https://download.pytorch.org/models/resnet18-f37072fd.pth", timeout=5)
    return tiny()


def torch_hub_download():
    model = tiny()
    state = torch.hub.load_state_dict_from_url("https://download.pytorch.org/models/resnet18-f37072fd.pth",
                                               progress=False)
    model.load_state_dict(state)
    return model


def returns_a_dict():
    return {"model": tiny()}


# --- factories of tests/reliability/test_json_document.py (output and warnings a command must contain) ---


def prints_to_stdout():
    """A chatty factory: Python print, a raw write to fd 1 and a child process, all on stdout."""
    import os
    import subprocess

    print("factory: building the model")
    sys.stdout.flush()
    os.write(1, b"factory: raw write to fd 1\n")
    subprocess.run([sys.executable, "-c", "print('factory: child process')"], check=True)
    return tiny()


class WarnsInForward(Tiny):
    """Warns on every call, like a library op with a deprecated default (emitted while a command runs the model)."""

    def forward(self, x):
        import warnings

        warnings.warn("upsample default will change", FutureWarning, stacklevel=1)
        return super().forward(x)


def warns():
    """A factory whose code emits warnings while loading (like torch's FutureWarnings) and in forward()."""
    import warnings

    warnings.warn("this factory API is deprecated", FutureWarning, stacklevel=1)
    warnings.warn("weights were saved by an older version", UserWarning, stacklevel=1)
    torch.manual_seed(0)
    return WarnsInForward().eval()
