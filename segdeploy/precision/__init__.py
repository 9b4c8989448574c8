"""Precision lowering: INT8 explicit Q/DQ (:mod:`.qdq`), strongly-typed FP16 (:mod:`.fp16`), the CPU
accuracy check (:mod:`.accuracy`), the mIoU budget search (:mod:`.budget`) and the whole
calibrate -> lower -> check stage (:mod:`.pipeline`). Submodules import their heavy dependencies lazily.
"""
