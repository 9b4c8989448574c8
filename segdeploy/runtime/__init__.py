"""The C++ runtime that embeds a segdeploy TensorRT engine in an application.

This package holds no Python code: ``cpp/`` holds the C++17/CUDA sources of ``segdeploy::Segmenter``
(the library ``segdeploy_runtime``), the command-line runner ``segdeploy_infer`` and their CMake build.
They ship as package data so that a bundle (``segdeploy bundle``) can copy ``cpp/`` to a device and build it
there; docs/jetson.md gives the steps, ``cpp/include/segdeploy/segmenter.h`` the API.

Layout of ``cpp/``:

* ``include/segdeploy/`` -- public headers. ``segmenter.h`` (the TensorRT runner) includes no CUDA or
  TensorRT header; the others (``manifest.h``, ``image.h``, ``preprocess.h``, ``postprocess.h``,
  ``plan.h``, ``stats.h``) are plain C++ that include no third-party header.
* ``src/`` -- the pure C++ core (the manifest through nlohmann-json, PNG through libpng + zlib and PPM/PGM
  image I/O, host reference of the preprocessing and of argmax + restore), the CUDA kernels
  (``kernels.cu``) and the TensorRT-facing code (``segmenter.cpp``). Without libpng the core builds with
  PPM/PGM only (CMakeLists.txt says how).
* ``tools/`` -- ``segdeploy_infer``.

The host reference is tested against ``segdeploy.datasets.preprocess`` in tests/runtime/.
"""
