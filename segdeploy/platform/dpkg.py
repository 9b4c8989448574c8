"""Read installed Debian package versions (JetPack, L4T, TensorRT) through ``dpkg-query``.

Contract:
    ``installed_versions(packages, root="/")`` -> ``{package: upstream_version}`` for the packages that
    are *installed* (status ``... installed``; removed packages whose config files remain are ignored).
    The database read is ``<root>/var/lib/dpkg`` (``dpkg-query --admindir``), so tests and chroots pass a
    fake tree holding only a ``status`` file. Returns ``{}`` when that database or ``dpkg-query`` is absent.
    ``upstream_version("10.3.0.30-1+cuda12.5")`` -> ``"10.3.0.30"`` (epoch, Debian revision and ``+build``
    suffix dropped).
Raises:
    :class:`DpkgError` when ``dpkg-query`` exists but cannot be run (timeout, OS error). Callers probing a
    machine catch it and report the text.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

_FORMAT = "${Package}\\t${Status}\\t${Version}\\n"


class DpkgError(RuntimeError):
    """``dpkg-query`` could not be run."""


def admindir(root: str | Path = "/") -> Path:
    """The dpkg database directory under ``root``."""
    return Path(root) / "var" / "lib" / "dpkg"


def upstream_version(deb_version: str) -> str:
    """Debian version -> upstream part: ``1:10.3.0.30-1+cuda12.5`` -> ``10.3.0.30``; ``6.2+b77`` -> ``6.2``."""
    v = deb_version.strip()
    if ":" in v:
        v = v.split(":", 1)[1]
    v = v.split("-", 1)[0]
    return v.split("+", 1)[0].split("~", 1)[0]


def installed_versions(packages: list[str] | tuple[str, ...], root: str | Path = "/",
                       timeout: float = 10.0) -> dict[str, str]:
    """Upstream versions of the installed ``packages`` (see the module docstring)."""
    db = admindir(root)
    exe = shutil.which("dpkg-query")
    if not packages or exe is None or not (db / "status").is_file():
        return {}
    cmd = [exe, f"--admindir={db}", "-W", f"-f={_FORMAT}", *packages]
    try:
        # rc is 1 when any requested package is unknown; the known ones are still printed.
        proc = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.SubprocessError) as e:
        raise DpkgError(f"dpkg-query failed: {e}") from e
    out: dict[str, str] = {}
    for line in proc.stdout.splitlines():
        parts = line.split("\t")
        if len(parts) != 3:
            continue
        name, status, version = (p.strip() for p in parts)
        name = name.split(":", 1)[0]
        if status.split()[-1:] == ["installed"] and version:
            out[name] = upstream_version(version)
    return out
