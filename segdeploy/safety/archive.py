"""Checking a ``torch.export`` archive's layout before PyTorch opens it: ambiguous layouts and zip bombs.

Contract
--------
:func:`read_pt2_layout` reads a ``torch.export`` archive's central directory (no member is read or inflated) and
raises :class:`ArchiveError` (one clause: what is wrong) when PyTorch's reader could see other files than the
ones named, or when the archive is a zip bomb: member names that are not valid text (or hold control characters
or ``\\``), absolute names, empty (``//``), ``.`` or ``..`` path segments, members outside the first member's
top directory (PyTorch's root), names equal up to ASCII case (PyTorch looks records up case-insensitively), more
than one ``archive_format`` entry; a member over 1 MiB that inflates more than 100:1 (``torch.export.save``
stores members uncompressed), or declared content larger than this machine's memory. It returns the
:class:`ArchiveLayout` (root, members, declared bytes; ``has_aotinductor``).
"""

from __future__ import annotations

import io
import os
import zipfile
from dataclasses import dataclass

AOTI_DIR = "data/aotinductor/"
_RATIO_FLOOR = 1 << 20  # members below 1 MiB are never called bombs
_MAX_RATIO = 100


class ArchiveError(ValueError):
    """The archive's layout is ambiguous or it is a zip bomb; ``str()`` says what is wrong."""


@dataclass
class ArchiveLayout:
    """What :func:`read_pt2_layout` found: the root directory and the member names below it."""

    root: str
    members: list[str]  # relative to the root, as PyTorch's reader names them
    declared_bytes: int

    @property
    def has_aotinductor(self) -> bool:
        return any(m.startswith(AOTI_DIR) for m in self.members)


def _member_name(info: zipfile.ZipInfo) -> str:
    """The name as PyTorch's reader sees it (raw bytes as UTF-8); ArchiveError if it is not clean text."""
    raw = info.orig_filename.encode("utf-8" if info.flag_bits & 0x800 else "cp437")
    try:
        name = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ArchiveError(f"member name {raw[:60]!r} is not valid UTF-8 text") from None
    if any(ord(c) < 32 or c in "\x7f\\" for c in name):
        raise ArchiveError(f"member name {name[:60]!r} holds control characters or backslashes")
    path = name[:-1] if name.endswith("/") else name
    parts = path.split("/")
    if name.startswith("/"):
        raise ArchiveError(f"member {name[:80]!r} has an absolute path")
    if "" in parts:
        raise ArchiveError(f"member {name[:80]!r} has an empty path segment ('//')")
    if "." in parts or ".." in parts:
        raise ArchiveError(f"member {name[:80]!r} has a '.' or '..' path segment")
    return name


def _check_sizes(infos: list[zipfile.ZipInfo]) -> int:
    for info in infos:
        if info.file_size > _RATIO_FLOOR and info.file_size > _MAX_RATIO * max(info.compress_size, 1):
            raise ArchiveError(
                f"member {info.filename[:80]!r} inflates {info.file_size // max(info.compress_size, 1)}:1 "
                f"({info.file_size / 2**20:.0f} MiB from {info.compress_size / 2**10:.0f} KiB): a zip bomb")
    total = sum(i.file_size for i in infos)
    memory = _physical_memory()
    if memory and total > memory:
        raise ArchiveError(f"its members declare {total / 2**30:.1f} GiB of content, more than this machine's "
                           f"memory ({memory / 2**30:.1f} GiB)")
    return total


def _physical_memory() -> int | None:
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def read_pt2_layout(data: bytes) -> ArchiveLayout:
    """Check a ``.pt2`` archive's layout and declared sizes (see module docstring); nothing is inflated."""
    try:
        infos = zipfile.ZipFile(io.BytesIO(data)).infolist()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as e:
        raise ArchiveError(f"it is not a readable zip archive ({e})") from None
    if not infos:
        raise ArchiveError("it has no members")
    names = [_member_name(i) for i in infos]
    root = names[0].split("/")[0]
    seen: dict[str, str] = {}
    for n in names:
        if n.split("/")[0] != root or ("/" not in n):
            raise ArchiveError(f"member {n[:80]!r} is outside the archive's root directory {root!r}/ (two roots)")
        key = n.lower()
        if key in seen:
            same = "twice" if seen[key] == n else f"and as {seen[key][:80]!r} (PyTorch ignores case)"
            raise ArchiveError(f"member {n[:80]!r} is present {same}")
        seen[key] = n
    formats = [n for n in names if n.rstrip("/").split("/")[-1] == "archive_format"]
    if formats != [f"{root}/archive_format"]:
        raise ArchiveError(f"it has {len(formats)} archive_format entries ({', '.join(f[:60] for f in formats[:3])}); "
                           f"a torch.export archive has exactly {root}/archive_format")
    total = _check_sizes(infos)
    members = [n[len(root) + 1:] for n in names if n != f"{root}/"]
    return ArchiveLayout(root=root, members=members, declared_bytes=total)
