"""CUDA plugins: MaxPool2d-with-indices, MaxUnpool2d and RoiAlign with PyTorch/torchvision semantics.

Layout: ``csrc/<op>/`` CUDA kernels behind TensorRT-free launcher headers, ``csrc/capi.h`` their C ABI
(libsegdeploy_kernels.so), ``trt/`` the TensorRT IPluginV3 glue, :mod:`segdeploy.plugins.build` the CMake
driver behind ``segdeploy plugins build``, :mod:`segdeploy.plugins.kernels` ctypes bindings (tests,
benchmarks). See docs/plugins.md. :mod:`segdeploy.plugins.locate` finds the built plugin library (the one
locator of `build`, `check`, `bench` and `doctor`); its names are re-exported here. Nothing heavy is imported here.
"""

from __future__ import annotations

from segdeploy.plugins.locate import (
    DEFAULT_BUILD_DIR,
    PLUGIN_LIBRARY,
    PLUGINS_ENV,
    LibrarySearch,
    find_library,
    library_for_engine,
    locate_library,
)

__all__ = [
    "DEFAULT_BUILD_DIR",
    "PLUGINS_ENV",
    "PLUGIN_LIBRARY",
    "LibrarySearch",
    "find_library",
    "library_for_engine",
    "locate_library",
]
