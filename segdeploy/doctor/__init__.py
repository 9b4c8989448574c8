"""`segdeploy doctor`: what this machine has (versions, CUDA, GPU, TensorRT, Jetson, plugins) and can do.

:func:`segdeploy.doctor.report.collect` builds the report dict (schema ``segdeploy.doctor`` v1);
:func:`segdeploy.doctor.render.render_table` prints it; :mod:`segdeploy.doctor.cli` is the command.
"""
