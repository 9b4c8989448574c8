#!/usr/bin/env python
"""segdeploy CUDA kernels vs PyTorch/torchvision CUDA ops, printed as JSON (needs a CUDA GPU).

    python benchmarks/plugins.py [--lib build/segdeploy-plugins/lib/libsegdeploy_kernels.so] [--quick]

Without --lib: $SEGDEPLOY_KERNELS_LIB, else the library is built for the local GPU (segdeploy plugins build)
into a temporary directory.

1. max_pool2d with indices, SegNet size 8x64x512x512 (kernel 2 stride 2; and 3/2/1), FP32 and FP16:
   ours (int32 and int64 indices) vs F.max_pool2d(return_indices=True) (int64 indices).
2. max_unpool2d of that pooling back to 512x512: ours (auto = gather, and scatter) vs F.max_unpool2d.
3. roi_align, Mask R-CNN size: 1000 boxes, 256 channels, features 2x256x200x272 (P2 of an 800x1088 image,
   spatial_scale 1/4), output 7x7 and 14x14, sampling_ratio 2 and 0 (adaptive), aligned: ours vs
   torchvision.ops.roi_align.
Achieved GB/s counts the bytes an op must move (read inputs once + write outputs once); % of peak uses
the device's theoretical DRAM bandwidth (memory clock x bus width x 2) and, as a practical ceiling,
torch's device-to-device copy bandwidth measured here. Times: median of CUDA-event timings.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _peak_bandwidth_gbs(dev: int) -> float | None:
    import ctypes

    import torch

    props = torch.cuda.get_device_properties(dev)
    clock_khz = getattr(props, "memory_clock_rate", None)
    bus_bits = getattr(props, "memory_bus_width", None)
    if not clock_khz or not bus_bits:
        try:  # cudaDeviceGetAttribute through the runtime torch loaded
            for name in ("libcudart.so", "libcudart.so.13", "libcudart.so.12"):
                try:
                    rt = ctypes.CDLL(name)
                    break
                except OSError:
                    rt = None
            if rt is None:
                return None
            v = ctypes.c_int()
            rt.cudaDeviceGetAttribute(ctypes.byref(v), 36, dev)  # cudaDevAttrMemoryClockRate (kHz)
            clock_khz = v.value
            rt.cudaDeviceGetAttribute(ctypes.byref(v), 37, dev)  # cudaDevAttrGlobalMemoryBusWidth (bits)
            bus_bits = v.value
        except (OSError, AttributeError):
            return None
    if not clock_khz or not bus_bits:
        return None
    return 2.0 * clock_khz * 1e3 * (bus_bits / 8) / 1e9


def _time_ms(fn, iters: int, warmup: int = 3) -> float:
    import torch

    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(iters):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b))
    return statistics.median(times)


def _entry(ms: float, nbytes: int, peak: float | None, copy_gbs: float) -> dict:
    gbs = nbytes / (ms * 1e-3) / 1e9
    return {
        "ms": round(ms, 4),
        "GB_per_s": round(gbs, 1),
        "pct_of_peak": round(100 * gbs / peak, 1) if peak else None,
        "pct_of_copy": round(100 * gbs / copy_gbs, 1),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lib", type=Path, default=None)
    ap.add_argument("--quick", action="store_true", help="smaller sizes (smoke run)")
    ap.add_argument("--iters", type=int, default=20)
    args = ap.parse_args(argv)

    import torch

    if not torch.cuda.is_available():
        print("error: benchmarks/plugins.py needs a CUDA GPU (torch.cuda.is_available() is False); "
              "nothing was measured", file=sys.stderr)
        return 1
    import torch.nn.functional as F
    import torchvision

    from segdeploy.plugins.kernels import load_kernels

    lib = args.lib or (Path(os.environ["SEGDEPLOY_KERNELS_LIB"]) if os.environ.get("SEGDEPLOY_KERNELS_LIB") else None)
    tmp = None
    if lib is None:
        from segdeploy.plugins.build import BuildOptions, build_plugins

        tmp = tempfile.TemporaryDirectory(prefix="segdeploy-bench-")
        lib = build_plugins(BuildOptions(cuda_arch="native", build_dir=Path(tmp.name))).kernels_library
    k = load_kernels(lib)
    dev = torch.cuda.current_device()
    props = torch.cuda.get_device_properties(dev)
    peak = _peak_bandwidth_gbs(dev)
    it = args.iters

    # practical ceiling: device-to-device copy (read + write)
    big = torch.empty(256 * 2**20 // 4, device="cuda")
    dst = torch.empty_like(big)
    copy_ms = _time_ms(lambda: dst.copy_(big), it)
    copy_gbs = 2 * big.numel() * 4 / (copy_ms * 1e-3) / 1e9
    del big, dst

    result: dict = {
        "device": props.name,
        "compute_capability": f"{props.major}.{props.minor}",
        "peak_dram_GB_per_s": round(peak, 1) if peak else None,
        "copy_GB_per_s": round(copy_gbs, 1),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "library": str(lib),
        "max_pool2d": [],
        "max_unpool2d": [],
        "roi_align": [],
    }
    N, C, H, W = (2, 64, 256, 256) if args.quick else (8, 64, 512, 512)
    for dtype in (torch.float32, torch.float16):
        x = torch.randn(N, C, H, W, device="cuda", dtype=dtype)
        es = x.element_size()
        for kk, ss, pp in ((2, 2, 0), (3, 2, 1)):
            ref, ref_idx = F.max_pool2d(x, kk, ss, pp, return_indices=True)
            out32, idx32 = k.max_pool2d_with_indices(x, kk, ss, pp, index_dtype=torch.int32)
            out64, idx64 = k.max_pool2d_with_indices(x, kk, ss, pp, index_dtype=torch.int64)
            same = bool(torch.equal(out32, ref) and torch.equal(idx32.long(), ref_idx) and torch.equal(idx64, ref_idx))
            n_out = ref.numel()
            row = {"shape": [N, C, H, W], "dtype": str(dtype).split(".")[-1], "kernel": kk, "stride": ss,
                   "padding": pp, "matches_torch": same}
            row["ours_int32"] = _entry(_time_ms(lambda: k.max_pool2d_with_indices(x, kk, ss, pp, index_dtype=torch.int32), it),
                                       x.numel() * es + n_out * (es + 4), peak, copy_gbs)
            row["ours_int64"] = _entry(_time_ms(lambda: k.max_pool2d_with_indices(x, kk, ss, pp, index_dtype=torch.int64), it),
                                       x.numel() * es + n_out * (es + 8), peak, copy_gbs)
            row["torch_int64"] = _entry(_time_ms(lambda: F.max_pool2d(x, kk, ss, pp, return_indices=True), it),
                                        x.numel() * es + n_out * (es + 8), peak, copy_gbs)
            row["speedup_int64_vs_torch"] = round(row["torch_int64"]["ms"] / row["ours_int64"]["ms"], 2)
            result["max_pool2d"].append(row)
            if kk == 2:  # unpool back to H x W
                ur = F.max_unpool2d(ref, ref_idx, 2, 2, output_size=(H, W))
                urow = {"shape": [N, C, H // 2, W // 2], "output": [H, W], "dtype": row["dtype"]}
                nbytes32 = ref.numel() * (es + 4) + x.numel() * es
                nbytes64 = ref.numel() * (es + 8) + x.numel() * es
                for algo in ("auto", "scatter"):
                    res = k.max_unpool2d(out32, idx32, 2, 2, 0, output_size=(H, W), algo=algo)
                    urow[f"matches_torch_{algo}"] = bool(torch.equal(res.output, ur) and res.invalid_indices == 0)
                    urow[f"ours_{algo}_int32"] = _entry(
                        _time_ms(lambda: k.max_unpool2d(out32, idx32, 2, 2, 0, output_size=(H, W), algo=algo), it),
                        nbytes32, peak, copy_gbs)
                urow["ours_auto_int64"] = _entry(
                    _time_ms(lambda: k.max_unpool2d(ref, ref_idx, 2, 2, 0, output_size=(H, W)), it), nbytes64, peak,
                    copy_gbs)
                urow["torch_int64"] = _entry(
                    _time_ms(lambda: F.max_unpool2d(ref, ref_idx, 2, 2, output_size=(H, W)), it), nbytes64, peak,
                    copy_gbs)
                urow["speedup_int64_vs_torch"] = round(urow["torch_int64"]["ms"] / urow["ours_auto_int64"]["ms"], 2)
                result["max_unpool2d"].append(urow)
            del ref, ref_idx, out32, idx32, out64, idx64
        del x
        torch.cuda.empty_cache()

    # roi_align, Mask R-CNN sized
    K = 200 if args.quick else 1000
    g = torch.Generator(device="cpu").manual_seed(0)
    img_h, img_w = 800, 1088
    cx, cy = torch.rand(K, generator=g) * img_w, torch.rand(K, generator=g) * img_h
    bw, bh = 16 + torch.rand(K, generator=g) * 300, 16 + torch.rand(K, generator=g) * 300
    boxes = torch.stack([torch.randint(0, 2, (K,), generator=g).float(), cx - bw / 2, cy - bh / 2,
                         cx + bw / 2, cy + bh / 2], 1).cuda()
    for dtype in (torch.float32, torch.float16):
        feat = torch.randn(2, 256, img_h // 4, img_w // 4, device="cuda", dtype=dtype)
        b = boxes.to(dtype)
        for out_size in (7, 14):
            for sr in (2, 0):
                ours = k.roi_align(feat, b, out_size, 0.25, sr, True)
                ref = torchvision.ops.roi_align(feat.float(), b.float(), out_size, 0.25, sr, True)
                err = (ours.float() - ref).abs().max().item()
                t_ours = _time_ms(lambda: k.roi_align(feat, b, out_size, 0.25, sr, True), it)
                t_tv = _time_ms(lambda: torchvision.ops.roi_align(feat, b, out_size, 0.25, sr, True), it)
                result["roi_align"].append({
                    "features": list(feat.shape), "boxes": K, "output": [out_size, out_size], "sampling_ratio": sr,
                    "aligned": True, "dtype": str(dtype).split(".")[-1], "max_abs_err_vs_torchvision_fp32": err,
                    "ours_ms": round(t_ours, 4), "torchvision_ms": round(t_tv, 4),
                    "speedup_vs_torchvision": round(t_tv / t_ours, 2),
                })
        del feat
    print(json.dumps(result, indent=2))
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
