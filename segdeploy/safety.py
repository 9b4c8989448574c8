"""What loading a model must never do: run code from an untrusted file, or download weights.

Contract
--------
* :func:`pickled_entries` inspects a ``torch.export`` archive (``.pt2``, as bytes) **without unpickling it
  unrestricted** and returns one line per entry that would run code when ``torch.export.load`` reads it:
  ``torch.export.load`` unpickles ``data/sample_inputs/*.pt`` (falling back to ``weights_only=False``),
  weights and constants marked ``use_pickle`` (``weights_only=False``), custom/opaque objects
  (``pickle.loads``), and loads compiled AOTInductor libraries. Each pickled payload is tried with
  PyTorch's restricted ``weights_only`` unpickler (which resolves only tensor/storage/container globals):
  a payload it accepts cannot reach any other global, so the later unrestricted load of the *same bytes*
  cannot run code either. Custom objects and AOTInductor libraries are always reported. The caller
  refuses the file unless the user passed ``--trust-pickle``; it must then load exactly the bytes checked.
* :func:`no_downloads` is a context manager that makes every outbound TCP connection attempted inside it
  fail, and records the attempts, so a factory that tries to fetch pretrained weights (torch.hub, the
  Hugging Face hub, plain urllib/requests) fails fast instead of downloading -- segdeploy never downloads.
  It patches ``socket.getaddrinfo`` and ``socket.socket.connect``/``connect_ex`` for the duration of the
  block (process-wide while it runs; restored on exit), and lets local names and AF_UNIX sockets through.
"""

from __future__ import annotations

import contextlib
import io
import json
import socket
import zipfile
from typing import Iterator

_AOTI = "data/aotinductor/"
_WEIGHTS = "data/weights/"
_CONSTANTS = "data/constants/"
_SAMPLE_INPUTS = "data/sample_inputs/"
_CUSTOM_PREFIXES = ("custom_obj_", "opaque_obj_")
_TENSOR_CONSTANT_PREFIX = "tensor_"


def _weights_only_error(payload: bytes) -> str | None:
    """None when PyTorch's restricted unpickler accepts ``payload``, else its complaint (one line)."""
    import torch

    try:
        torch.load(io.BytesIO(payload), weights_only=True, map_location="cpu")
    except Exception as e:  # noqa: BLE001 - any refusal means "not weights-only"
        import re

        text = " ".join(str(e).split())
        m = re.search(r"GLOBAL (\S+) was not an allowed global", text)
        if m:
            return f"unpickling it calls {m.group(1)}"
        m = re.search(r"Unsupported (?:global|operand)[^.]*", text)
        return m.group(0)[:120] if m else "PyTorch's weights-only unpickler refuses it"
    return None


def pickled_entries(data: bytes) -> list[str]:
    """Entries of a ``.pt2`` archive that need unrestricted unpickling or load native code (see module docstring)."""
    try:
        z = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile:
        return []  # not an archive: torch.export.load refuses it without unpickling anything
    names = z.namelist()
    prefix = ""
    for n in names:
        if n.endswith("archive_format"):
            prefix = n[: -len("archive_format")]
            break
    rel = {n[len(prefix):]: n for n in names if n.startswith(prefix)}
    problems: list[str] = []

    def check(r: str) -> None:
        err = _weights_only_error(z.read(rel[r]))
        if err is not None:
            problems.append(f"{r} ({err})")

    if any(r.startswith(_AOTI) for r in rel):
        problems.append(f"{_AOTI} (compiled AOTInductor libraries: loading them runs native code)")
    for r in sorted(rel):
        if r.startswith(_SAMPLE_INPUTS) and not r.endswith("/"):
            check(r)
        elif r.startswith(_WEIGHTS) and r.endswith(".pt"):  # legacy single-file weights
            check(r)
    for cfg_suffix, base in (("_weights_config.json", _WEIGHTS), ("_constants_config.json", _CONSTANTS)):
        for r in sorted(rel):
            if not (r.startswith(base) and r.endswith(cfg_suffix)):
                continue
            try:
                cfg = json.loads(z.read(rel[r]).decode("utf-8")).get("config", {})
            except (ValueError, UnicodeDecodeError, AttributeError):
                problems.append(f"{r} (unreadable payload configuration)")
                continue
            for fqn, meta in (cfg.items() if isinstance(cfg, dict) else []):
                path_name = str((meta or {}).get("path_name", ""))
                entry = base + path_name
                if path_name.startswith(_CUSTOM_PREFIXES):
                    problems.append(f"{entry} ({fqn}: a custom object, unpickled with arbitrary globals)")
                elif (meta or {}).get("use_pickle") and entry in rel:
                    check(entry)
    return problems


class DownloadAttempt(OSError):
    """Raised inside :func:`no_downloads` instead of connecting."""


@contextlib.contextmanager
def no_downloads() -> Iterator[list[str]]:
    """Refuse outbound connections inside the block; yields the list of attempted addresses."""
    attempts: list[str] = []
    real_connect, real_connect_ex = socket.socket.connect, socket.socket.connect_ex

    def refuse(self, address):
        if self.family == getattr(socket, "AF_UNIX", None):
            return real_connect(self, address)
        attempts.append(str(address[0]) if isinstance(address, tuple) and address else str(address))
        raise DownloadAttempt(f"segdeploy refused a network connection to {address}")

    def refuse_ex(self, address):
        if self.family == getattr(socket, "AF_UNIX", None):
            return real_connect_ex(self, address)
        refuse(self, address)

    real_getaddrinfo = socket.getaddrinfo

    def refuse_lookup(host, *args, **kwargs):
        if host in (None, "localhost", "127.0.0.1", "::1"):
            return real_getaddrinfo(host, *args, **kwargs)
        attempts.append(str(host))
        raise DownloadAttempt(f"segdeploy refused to look up {host} (no downloads while loading a model)")

    socket.socket.connect = refuse
    socket.socket.connect_ex = refuse_ex
    socket.getaddrinfo = refuse_lookup
    try:
        yield attempts
    finally:
        socket.socket.connect = real_connect
        socket.socket.connect_ex = real_connect_ex
        socket.getaddrinfo = real_getaddrinfo
