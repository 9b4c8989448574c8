"""Fake filesystem trees for the platform tests: Jetson device trees, L4T release files, dpkg databases,
TensorRT version headers. Everything is written under a temporary root; nothing reads the real /."""

from __future__ import annotations

from pathlib import Path

# Device-tree facts per board as the kernel exposes them (NUL-separated strings).
BOARDS = {
    "agx_orin_64": {
        "model": "NVIDIA Jetson AGX Orin Developer Kit",
        "compatible": ["nvidia,p3737-0000+p3701-0005", "nvidia,p3701-0005", "nvidia,tegra234"],
        "boardids": "3701:0005",
    },
    "orin_nano_devkit": {
        "model": "NVIDIA Jetson Orin Nano Engineering Reference Developer Kit Super",
        "compatible": ["nvidia,p3768-0000+p3767-0005-super", "nvidia,p3767-0005", "nvidia,tegra234"],
        "boardids": None,  # recent L4T releases do not expose nvidia,boardids
    },
    "orin_nx_16": {
        "model": "NVIDIA Jetson Orin NX Engineering Reference Developer Kit",
        "compatible": ["nvidia,p3768-0000+p3767-0000", "nvidia,p3767-0000", "nvidia,tegra234"],
        "boardids": None,
    },
    "orin_nx_8": {
        "model": "NVIDIA Jetson Orin NX Engineering Reference Developer Kit",
        "compatible": ["nvidia,p3768-0000+p3767-0001", "nvidia,p3767-0001", "nvidia,tegra234"],
        "boardids": None,
    },
    "agx_thor": {
        "model": "NVIDIA Jetson AGX Thor Developer Kit",
        "compatible": ["nvidia,p3971-0089+p3834-0008", "nvidia,p3834-0008", "nvidia,tegra264"],
        "boardids": None,
    },
}


def tegra_release_line(l4t: str) -> str:
    """The first line of /etc/nv_tegra_release for L4T ``36.4.3``: ``# R36 (release), REVISION: 4.3, ...``."""
    major, rest = l4t.split(".", 1)
    return (f"# R{major} (release), REVISION: {rest}, GCID: 38968081, BOARD: generic, EABI: aarch64, "
            "DATE: Wed Jan  8 01:49:37 UTC 2025\n")


def write_board(root: Path, board: str, l4t: str | None, *, sysfs: bool = False) -> Path:
    """A Jetson tree: device tree of ``board`` (under /proc or /sys/firmware) and, if given, the L4T release."""
    facts = BOARDS[board]
    dt = root / ("sys/firmware/devicetree/base" if sysfs else "proc/device-tree")
    dt.mkdir(parents=True, exist_ok=True)
    (dt / "model").write_bytes(facts["model"].encode() + b"\x00")
    (dt / "compatible").write_bytes(b"".join(c.encode() + b"\x00" for c in facts["compatible"]))
    if facts["boardids"]:
        (dt / "nvidia,boardids").write_bytes(facts["boardids"].encode() + b"\x00")
    if l4t is not None:
        (root / "etc").mkdir(parents=True, exist_ok=True)
        (root / "etc/nv_tegra_release").write_text(tegra_release_line(l4t) + "# KERNEL_VARIANT: oot\n")
    return root


def write_dpkg_status(root: Path, packages: dict[str, str], status: str = "install ok installed",
                      removed: dict[str, str] | None = None) -> Path:
    """A dpkg database holding ``packages`` (name -> Debian version); ``removed`` ones keep only config files."""
    db = root / "var/lib/dpkg"
    db.mkdir(parents=True, exist_ok=True)
    stanzas = []
    for pkgs, st in ((packages, status), (removed or {}, "deinstall ok config-files")):
        for name, version in pkgs.items():
            stanzas.append(f"Package: {name}\nStatus: {st}\nPriority: optional\nSection: libs\n"
                           f"Maintainer: test <test@example.com>\nArchitecture: arm64\nVersion: {version}\n"
                           f"Description: fake package for tests\n")
    (db / "status").write_text("\n".join(stanzas))
    return db / "status"


def write_version_header(root: Path, subdir: str, major: int, minor: int, patch: int, *, alias: bool) -> Path:
    """An NvInferVersion.h stand-in: literal defines (8.x-10.x style) or TRT_*_ENTERPRISE aliases (10.16+ style)."""
    d = root / subdir
    d.mkdir(parents=True, exist_ok=True)
    if alias:
        text = (f"#define TRT_MAJOR_ENTERPRISE {major}\n#define TRT_MINOR_ENTERPRISE {minor}\n"
                f"#define TRT_PATCH_ENTERPRISE {patch}\n#define TRT_BUILD_ENTERPRISE 7\n"
                "#define NV_TENSORRT_MAJOR TRT_MAJOR_ENTERPRISE //!< major\n"
                "#define NV_TENSORRT_MINOR TRT_MINOR_ENTERPRISE //!< minor\n"
                "#define NV_TENSORRT_PATCH TRT_PATCH_ENTERPRISE //!< patch\n")
    else:
        text = (f"#define NV_TENSORRT_MAJOR {major} //!< major\n#define NV_TENSORRT_MINOR {minor} //!< minor\n"
                f"#define NV_TENSORRT_PATCH {patch} //!< patch\n#define NV_TENSORRT_BUILD 3 //!< build\n")
    p = d / "NvInferVersion.h"
    p.write_text("#ifndef NV_INFER_VERSION_H\n#define NV_INFER_VERSION_H\n" + text + "#endif\n")
    return p
