"""Verify: check what the compiler built against a reference, and time it.

``compare`` compares a module's outputs with the reference's; ``emulate`` runs a
module for another CPU under qemu; ``benchmark`` times a module against its
reference; ``onnx_backend`` and ``conformance`` run ONNX's node tests through mcc.
It is the top of the compiler: it may import every other stage.
"""
