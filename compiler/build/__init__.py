"""Build: a scheduled Relax module to a VM executable, and that executable to one ``.so``.

``lower`` runs TVM's lowering and code generation (CUDA kernels through ``nvcc``,
``cuda``); ``toolchain`` finds the compilers a target needs; ``export`` writes the
module with its metadata as one file, atomically. It may import ``mcc.passes``,
``mcc.schedule``, ``mcc.targets``, ``mcc.runtime`` and ``mcc.errors``, never the
driver, tuning, deploy or verify stages.
"""
