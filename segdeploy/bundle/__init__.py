"""`segdeploy bundle`: everything a Jetson (or any TensorRT host) needs to build and run the engine on the device.

Engines cannot be cross-built (TensorRT's only runtime platforms are "same as build" and Windows), so the
bundle carries the hash-checked ONNX variants and manifest, the plugin sources (when the model needs them),
the C++ runtime sources, sample images with their reference class maps, and ``build.sh``, which builds the
plugin library, the engines and the runner on the device and runs a smoke test. See :mod:`.stage`.
"""
