"""Write examples/tiny_resnet.onnx: the bundled demo model (seeded, deterministic).

A small residual CNN in plain ONNX (no torch needed): two conv + batch-norm +
ReLU stages, a residual add, global average pooling, a dense layer and a
softmax over 10 classes. Input ``image`` is float32[1,3,32,32], with a
symbolic batch dimension ``batch`` so the demo also shows --input-shape.

    python examples/make_tiny_resnet.py [OUT.onnx]
"""

import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def build(seed: int = 0) -> onnx.ModelProto:
    rng = np.random.default_rng(seed)
    inits = []

    def const(name, array):
        inits.append(numpy_helper.from_array(np.asarray(array, dtype=np.float32), name))
        return name

    def conv_bn_relu(x, cin, cout, tag, relu=True):
        w = const(f"{tag}.w", rng.standard_normal((cout, cin, 3, 3)) * np.sqrt(2 / (9 * cin)))
        b = const(f"{tag}.b", rng.standard_normal(cout) * 0.1)
        bn = [const(f"{tag}.gamma", rng.uniform(0.5, 1.5, cout)),
              const(f"{tag}.beta", rng.standard_normal(cout) * 0.1),
              const(f"{tag}.mean", rng.standard_normal(cout) * 0.1),
              const(f"{tag}.var", rng.uniform(0.5, 1.5, cout))]
        nodes = [helper.make_node("Conv", [x, w, b], [f"{tag}.conv"], pads=[1, 1, 1, 1],
                                  name=f"{tag}/Conv"),
                 helper.make_node("BatchNormalization", [f"{tag}.conv", *bn], [f"{tag}.bn"],
                                  epsilon=1e-5, name=f"{tag}/BatchNormalization")]
        if relu:
            nodes.append(helper.make_node("Relu", [f"{tag}.bn"], [f"{tag}.out"],
                                          name=f"{tag}/Relu"))
            return nodes, f"{tag}.out"
        return nodes, f"{tag}.bn"

    nodes, x = conv_bn_relu("image", 3, 16, "stem")
    block1, y = conv_bn_relu(x, 16, 16, "block.conv1")
    block2, y = conv_bn_relu(y, 16, 16, "block.conv2", relu=False)
    nodes += block1 + block2
    fc_w = const("fc.w", rng.standard_normal((16, 10)) * 0.3)
    fc_b = const("fc.b", rng.standard_normal(10) * 0.1)
    nodes += [
        helper.make_node("Add", [x, y], ["block.sum"], name="block/Add"),
        helper.make_node("Relu", ["block.sum"], ["block.out"], name="block/Relu"),
        helper.make_node("GlobalAveragePool", ["block.out"], ["pool"], name="head/Pool"),
        helper.make_node("Flatten", ["pool"], ["flat"], axis=1, name="head/Flatten"),
        helper.make_node("MatMul", ["flat", fc_w], ["logits0"], name="head/MatMul"),
        helper.make_node("Add", ["logits0", fc_b], ["logits"], name="head/Add"),
        helper.make_node("Softmax", ["logits"], ["probs"], axis=-1, name="head/Softmax"),
    ]
    graph = helper.make_graph(
        nodes, "tiny_resnet",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 3, 32, 32])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["batch", 10])],
        initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)],
                              producer_name="mcc-example")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


if __name__ == "__main__":
    out = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).with_name("tiny_resnet.onnx"))
    onnx.save(build(), str(out))
    print(f"wrote {out}")
