"""Build: a Relax module to a VM executable, and that executable to one ``.so``.

``lower.lower_and_build`` is the one road from a Relax module to an executable: the
graph passes in their fixed order (``pipeline``), the schedule stage (mcc.schedule),
then TVM's lowering and code generation (CUDA kernels through ``nvcc``: ``cuda``);
``toolchain`` finds the compilers a target needs; ``export`` writes the module with its
metadata as one file, atomically. It may import mcc.passes, mcc.schedule (and its
records, to name refused ones), mcc.targets, mcc.runtime and mcc.errors; never tuning,
the driver, deploy or verify.
"""
