"""CUDA plugins: MaxPool2d-with-indices, MaxUnpool2d and RoiAlign with PyTorch/torchvision semantics.

Layout: ``csrc/<op>/`` CUDA kernels behind TensorRT-free launcher headers, ``csrc/capi.h`` their C ABI
(libsegdeploy_kernels.so), ``trt/`` the TensorRT IPluginV3 glue, :mod:`segdeploy.plugins.build` the CMake
driver behind ``segdeploy plugins build``, :mod:`segdeploy.plugins.kernels` ctypes bindings (tests,
benchmarks). See docs/plugins.md. Nothing heavy is imported here.
"""

from __future__ import annotations
