"""Jetson detection: L4T release, module, SoC, JetPack, the TensorRT/CUDA it ships, DLA cores.

Contract (every function takes ``root``, default ``"/"``, so tests and chroots pass a fake tree):
    ``detect(root)`` -> :class:`JetsonInfo`, or ``None`` when the tree is not a Jetson (no
    ``etc/nv_tegra_release``, no ``nvidia-l4t-core`` package and no ``nvidia,tegra*`` device-tree entry).
    ``read_l4t(root)`` -> ``"36.4.3"`` from the first line of ``etc/nv_tegra_release``
    (``# R36 (release), REVISION: 4.3, ...``), else from the ``nvidia-l4t-core`` package; ``None`` if neither.
    ``read_device_tree(root)`` -> :class:`DeviceTree` (``model``, ``compatible`` entries, ``boardids``) from
    ``proc/device-tree`` or ``sys/firmware/devicetree/base``.
    ``module_for(device_tree)`` -> :class:`Module` (part number, name, SoC, DLA cores) or ``None``.
    ``jetpack_for_l4t("36.3.0")`` -> :class:`JetPackRelease` (JetPack, TensorRT, CUDA) or ``None``.
Tables: part numbers as jtop (rbonghi/jetson_stats) names them; L4T -> JetPack as jtop's table; JetPack ->
TensorRT/CUDA from NVIDIA's release pages and the notes in the project's research (entries that no primary
source confirmed carry ``confirmed=False``). The BOARD field of nv_tegra_release is ignored (it names the
wrong SoC on many releases). DLA counts here are table values: measure with
``trt.Builder(logger).num_DLA_cores`` where TensorRT and the GPU are available.
Never raises for missing or malformed files: absent facts are ``None``.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from segdeploy.platform import dpkg

NV_TEGRA_RELEASE = "etc/nv_tegra_release"
DEVICE_TREE_DIRS = ("proc/device-tree", "sys/firmware/devicetree/base")


@dataclass(frozen=True)
class JetPackRelease:
    jetpack: str
    l4t: tuple[str, ...]
    tensorrt: str  # major.minor.patch, or major.minor where the patch level is not known
    cuda: str
    confirmed: bool = True  # False: no primary source confirmed the TensorRT/CUDA versions
    note: str = ""


@dataclass(frozen=True)
class Soc:
    name: str  # "Orin", "Thor"
    compute_capability: str
    dla_cores: int | None  # for the whole SoC family; None when it depends on the module


@dataclass(frozen=True)
class Module:
    part: str  # "p3701-0005"
    name: str
    soc: str  # "tegra234"
    dla_cores: int | None
    dla_confirmed: bool = True


# --- tables -------------------------------------------------------------------------------------------
_TRT_85 = ("8.5.2", "11.4", True, "TensorRT 8.5.2 per third-party reports of JetPack 5.1.x")
JETPACK_RELEASES: tuple[JetPackRelease, ...] = (
    JetPackRelease("5.1", ("35.2.1",), *_TRT_85),
    JetPackRelease("5.1.1", ("35.3.1",), *_TRT_85),
    JetPackRelease("5.1.2", ("35.4.1",), *_TRT_85),
    JetPackRelease("5.1.3", ("35.5.0",), *_TRT_85),
    JetPackRelease("5.1.4", ("35.6.0",), *_TRT_85),
    JetPackRelease("5.1.5", ("35.6.1", "35.6.2", "35.6.3"), *_TRT_85),
    JetPackRelease("5.1.6", ("35.6.4",), *_TRT_85),
    JetPackRelease("6.0 DP", ("36.2.0",), "8.6.2", "12.2", False, "developer preview; versions assumed as 6.0"),
    JetPackRelease("6.0", ("36.3.0",), "8.6.2", "12.2", True, "TensorRT 8.6.2.3"),
    JetPackRelease("6.1", ("36.4.0",), "10.3.0", "12.6"),
    JetPackRelease("6.1 (rev1)", ("36.4.2",), "10.3.0", "12.6"),
    JetPackRelease("6.2", ("36.4.3",), "10.3.0", "12.6"),
    JetPackRelease("6.2.1", ("36.4.4", "36.4.7"), "10.3.0", "12.6", False, "TensorRT presumed unchanged from 6.2"),
    JetPackRelease("6.2.2", ("36.5.0",), "10.3.0", "12.6", False, "TensorRT presumed unchanged from 6.2"),
    JetPackRelease("7.0", ("38.2.0", "38.2.1", "38.2.2"), "10.13", "13.0", True,
                   "Thor only; TensorRT patch level not confirmed (10.13.3 per third-party reports)"),
    JetPackRelease("7.1", ("38.4.0",), "10.13", "13.0", True, "Thor only; TensorRT patch level not confirmed"),
    JetPackRelease("7.2 EA", ("39.0.0",), "10.16", "13.2", False,
                   "Orin + Thor; TensorRT 10.16 unconfirmed (TensorRT 11.4.1 supports JetPack 7.2.2+)"),
    JetPackRelease("7.2", ("39.2.0",), "10.16", "13.2", False,
                   "Orin + Thor; TensorRT 10.16 unconfirmed (TensorRT 11.4.1 supports JetPack 7.2.2+)"),
)

SOCS: dict[str, Soc] = {
    "tegra234": Soc("Orin", "8.7", None),
    "tegra264": Soc("Thor", "11.0", 0),  # sm_110 with CUDA 13 (sm_101 with CUDA 12.8/12.9)
}

MODULES: dict[str, Module] = {m.part: m for m in (
    Module("p3701-0000", "Jetson AGX Orin", "tegra234", 2),
    Module("p3701-0002", "Jetson IGX Orin (Developer Kit)", "tegra234", None),
    Module("p3701-0004", "Jetson AGX Orin 32GB", "tegra234", 2),
    Module("p3701-0005", "Jetson AGX Orin 64GB", "tegra234", 2),
    Module("p3701-0008", "Jetson AGX Orin Industrial", "tegra234", 2),
    Module("p3767-0000", "Jetson Orin NX 16GB", "tegra234", 2),
    Module("p3767-0001", "Jetson Orin NX 8GB", "tegra234", 1, dla_confirmed=False),
    Module("p3767-0003", "Jetson Orin Nano 8GB", "tegra234", 0),
    Module("p3767-0004", "Jetson Orin Nano 4GB", "tegra234", 0),
    Module("p3767-0005", "Jetson Orin Nano (Developer Kit)", "tegra234", 0),
    Module("p3834-0008", "Jetson AGX Thor (Developer Kit)", "tegra264", 0),
)}

# Board number -> (family name, SoC, DLA cores for an unlisted SKU or None when SKUs differ)
FAMILIES: dict[str, tuple[str, str, int | None]] = {
    "3701": ("Jetson AGX Orin", "tegra234", 2),
    "3767": ("Jetson Orin NX / Orin Nano", "tegra234", None),
    "3834": ("Jetson Thor", "tegra264", 0),
}

# Device-tree model keywords (used when no part number is readable), most specific first.
_MODEL_KEYWORDS: tuple[tuple[str, str, str, int | None], ...] = (
    ("orin nano", "Jetson Orin Nano", "tegra234", 0),
    ("orin nx", "Jetson Orin NX", "tegra234", None),
    ("agx orin", "Jetson AGX Orin", "tegra234", 2),
    ("thor", "Jetson Thor", "tegra264", 0),
)

_RELEASE_RE = re.compile(r"#\s*R(\d+)\s*\(release\)\s*,\s*REVISION:\s*(\d+(?:\.\d+)*)")
_PART_RE = re.compile(r"p?(\d{4})[-:](\d{4})")


@dataclass(frozen=True)
class DeviceTree:
    model: str | None = None
    compatible: tuple[str, ...] = ()
    boardids: tuple[str, ...] = ()


@dataclass(frozen=True)
class JetsonInfo:
    """What a Jetson tree says about itself. ``None`` fields were not found or are not in the tables."""

    model: str | None  # device-tree model, e.g. "NVIDIA Jetson AGX Orin Developer Kit"
    module: str | None  # module name from the tables
    part_number: str | None  # "p3701-0005"
    soc: str | None  # "tegra234"
    soc_name: str | None  # "Orin"
    compute_capability: str | None  # "8.7"
    l4t: str | None  # "36.3.0"
    jetpack: str | None
    jetpack_source: str | None  # "nvidia-jetpack package" | "L4T table"
    tensorrt: str | None  # what this JetPack ships (table)
    cuda: str | None  # what this JetPack ships (table)
    table_confirmed: bool | None
    dla_cores: int | None  # table value
    dla_confirmed: bool | None
    notes: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["notes"] = list(self.notes)
        return d


# --- readers ------------------------------------------------------------------------------------------
def _read_text(path: Path) -> str | None:
    try:
        return path.read_bytes().decode("utf-8", "replace")
    except OSError:
        return None


def _nul_entries(path: Path) -> tuple[str, ...]:
    """The non-empty NUL-separated strings of a device-tree property file (empty if it is absent)."""
    text = _read_text(path)
    return tuple(s.strip() for s in (text or "").split("\x00") if s.strip())


def parse_nv_tegra_release(text: str) -> str | None:
    """``# R36 (release), REVISION: 4.3, GCID: ...`` -> ``"36.4.3"``; ``None`` if the line is not there."""
    m = _RELEASE_RE.search(text or "")
    if not m:
        return None
    parts = [m.group(1), *m.group(2).split(".")]
    while len(parts) < 3:
        parts.append("0")
    return ".".join(parts[:3])


def read_l4t(root: str | Path = "/") -> str | None:
    """L4T release of the tree (see the module docstring)."""
    text = _read_text(Path(root) / NV_TEGRA_RELEASE)
    if text is not None:
        found = parse_nv_tegra_release(text)
        if found:
            return found
    try:
        v = dpkg.installed_versions(["nvidia-l4t-core"], root).get("nvidia-l4t-core")
    except dpkg.DpkgError:
        return None
    return v or None


def read_device_tree(root: str | Path = "/") -> DeviceTree:
    """Model, compatible and board ids (NUL-separated strings in the device tree)."""
    for rel in DEVICE_TREE_DIRS:
        base = Path(root) / rel
        if not base.is_dir():
            continue

        model = _nul_entries(base / "model")
        return DeviceTree(model[0] if model else None, _nul_entries(base / "compatible"),
                          _nul_entries(base / "nvidia,boardids"))
    return DeviceTree()


def soc_of(dt: DeviceTree) -> str | None:
    """The SoC entry of ``compatible`` (``nvidia,tegra234`` -> ``tegra234``); the last one wins."""
    socs = [m.group(0) for c in dt.compatible for m in [re.search(r"tegra\d+", c)] if m]
    return socs[-1] if socs else None


def part_numbers(dt: DeviceTree) -> list[str]:
    """Every ``pNNNN-NNNN`` id in ``nvidia,boardids`` and ``compatible`` (module and carrier), in order."""
    seen: list[str] = []
    for text in (*dt.boardids, *dt.compatible):
        for m in _PART_RE.finditer(text):
            p = f"p{m.group(1)}-{m.group(2)}"
            if p not in seen:
                seen.append(p)
    return seen


def module_for(dt: DeviceTree) -> Module | None:
    """The module: a listed part number, else a known board family, else a model-name keyword."""
    parts = part_numbers(dt)
    for p in parts:
        if p in MODULES:
            return MODULES[p]
    for p in parts:
        fam = FAMILIES.get(p[1:5])
        if fam:
            name, soc, dla = fam
            return Module(p, f"{name} (unlisted SKU {p})", soc, dla, dla_confirmed=False)
    model = (dt.model or "").lower()
    for key, name, soc, dla in _MODEL_KEYWORDS:
        if key in model:
            return Module("", name, soc, dla, dla_confirmed=dla is not None)
    return None


def jetpack_for_l4t(l4t: str | None) -> JetPackRelease | None:
    """The JetPack release whose L4T list holds ``l4t`` exactly; ``None`` when not in the table."""
    if not l4t:
        return None
    for rel in JETPACK_RELEASES:
        if l4t in rel.l4t:
            return rel
    return None


def nearest_known_l4t(l4t: str) -> str | None:
    """The highest tabled L4T not above ``l4t`` within the same major release (for hints only)."""
    def key(v: str) -> tuple[int, ...]:
        return tuple(int(x) for x in v.split(".") if x.isdigit())

    try:
        target = key(l4t)
    except ValueError:
        return None
    known = [v for rel in JETPACK_RELEASES for v in rel.l4t if key(v)[:1] == target[:1] and key(v) <= target]
    return max(known, key=key) if known else None


def is_jetson(root: str | Path = "/") -> bool:
    """True when the tree has nv_tegra_release, the L4T core package, or a tegra device tree."""
    if (Path(root) / NV_TEGRA_RELEASE).is_file():
        return True
    if soc_of(read_device_tree(root)) is not None:
        return True
    try:
        return bool(dpkg.installed_versions(["nvidia-l4t-core"], root))
    except dpkg.DpkgError:
        return False


def detect(root: str | Path = "/") -> JetsonInfo | None:
    """Everything the tree says about the Jetson (see the module docstring); ``None`` if not a Jetson."""
    if not is_jetson(root):
        return None
    notes: list[str] = []
    dt = read_device_tree(root)
    l4t = read_l4t(root)
    module = module_for(dt)
    soc = soc_of(dt) or (module.soc if module else None)
    soc_info = SOCS.get(soc or "")
    rel = jetpack_for_l4t(l4t)
    jetpack, jp_source = (rel.jetpack, "L4T table") if rel else (None, None)
    try:
        pkg = dpkg.installed_versions(["nvidia-jetpack"], root).get("nvidia-jetpack")
    except dpkg.DpkgError as e:
        pkg = None
        notes.append(str(e))
    if pkg:
        jetpack, jp_source = pkg, "nvidia-jetpack package"
    if l4t is None:
        notes.append(f"no L4T release found ({NV_TEGRA_RELEASE} and the nvidia-l4t-core package are absent)")
    elif rel is None:
        near = nearest_known_l4t(l4t)
        hint = f"; nearest known: L4T {near} (JetPack {jetpack_for_l4t(near).jetpack})" if near else ""
        notes.append(f"L4T {l4t} is not in segdeploy's JetPack table, so the TensorRT/CUDA it ships is unknown{hint}")
    elif not rel.confirmed:
        notes.append(f"JetPack {rel.jetpack}: TensorRT {rel.tensorrt} / CUDA {rel.cuda} are unconfirmed table values"
                     + (f" ({rel.note})" if rel.note else ""))
    elif rel.note:
        notes.append(f"JetPack {rel.jetpack}: {rel.note}")
    dla = module.dla_cores if module else None
    if dla is None and soc_info is not None:
        dla = soc_info.dla_cores
    dla_confirmed = (module.dla_confirmed if module and module.dla_cores is not None
                     else (True if dla is not None else None))
    if module is None:
        notes.append("module not identified (no known part number in the device tree)")
    return JetsonInfo(
        model=dt.model,
        module=module.name if module else None,
        part_number=(module.part or None) if module else None,
        soc=soc,
        soc_name=soc_info.name if soc_info else None,
        compute_capability=soc_info.compute_capability if soc_info else None,
        l4t=l4t,
        jetpack=jetpack,
        jetpack_source=jp_source,
        tensorrt=rel.tensorrt if rel else None,
        cuda=rel.cuda if rel else None,
        table_confirmed=rel.confirmed if rel else None,
        dla_cores=dla,
        dla_confirmed=dla_confirmed,
        notes=tuple(notes),
    )
