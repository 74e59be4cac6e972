"""ONNX RNN, GRU and LSTM, unrolled over the (static) sequence length.

The input projection ``X @ W^T + Wb + Rb`` is one matmul for all steps; each step
then adds ``H @ R^T`` and applies the gate equations of the ONNX spec (gate order
LSTM i,o,f,c; GRU z,r,h). Both directions, ``layout`` 0/1, peepholes,
``clip``, ``linear_before_reset``, the activation attributes and a per-batch
``sequence_lens`` (forward direction: finished rows keep their state, Y is 0)
are supported. Unrolling suits the short, fixed sequences of deployed models
(keyword spotting, VAD frames); a symbolic sequence length is rejected.
"""

from __future__ import annotations

from tvm import relax
from tvm.relax.frontend.onnx.onnx_frontend import OnnxOpConverter

from mcc.frontends.onnx_ops import register
from mcc.frontends.onnx_ops._relax import const, dtype_of, shape_of

op = relax.op


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _activation(name: str, alpha, beta, dtype):
    """ONNX RNN activation ``name`` as a function on Relax values."""
    name = name.lower()

    def a(default):
        return const(alpha if alpha is not None else default, dtype)

    def b(default):
        return const(beta if beta is not None else default, dtype)

    table = {
        "sigmoid": op.sigmoid,
        "tanh": op.tanh,
        "relu": op.nn.relu,
        "affine": lambda x: op.add(op.multiply(a(1.0), x), b(0.0)),
        "leakyrelu": lambda x: op.where(op.less(x, const(0.0, dtype)),
                                        op.multiply(a(0.01), x), x),
        "thresholdedrelu": lambda x: op.where(op.greater(x, a(1.0)), x, const(0.0, dtype)),
        "scaledtanh": lambda x: op.multiply(a(1.0), op.tanh(op.multiply(b(1.0), x))),
        "hardsigmoid": lambda x: op.clip(op.add(op.multiply(a(0.2), x), b(0.5)), 0.0, 1.0),
        "elu": lambda x: op.where(op.less(x, const(0.0, dtype)),
                                  op.multiply(a(1.0), op.subtract(op.exp(x), const(1.0, dtype))),
                                  x),
        "softsign": lambda x: op.divide(x, op.add(const(1.0, dtype), op.abs(x))),
        "softplus": lambda x: op.log(op.add(op.exp(x), const(1.0, dtype))),
    }
    if name not in table:
        raise ValueError(f"RNN activation {name} is not supported")
    return table[name]


class _Recurrent(OnnxOpConverter):
    """Shared driver: parse inputs/attributes, run each direction, assemble outputs."""

    gates = 1
    states = 1  # hidden (and cell for LSTM)
    default_activations = ("Tanh",)

    @staticmethod
    def _matmul(a, b):
        """The input projection's and the LSTM recurrence's product (a quantized LSTM
        quantizes ``a`` first)."""
        return op.matmul(a, b)

    @classmethod
    def _impl_v7(cls, bb, inputs, attr, params):
        x, w, r = inputs[0], inputs[1], inputs[2]
        def get(i):
            return inputs[i] if len(inputs) > i else None

        bias, seq_lens = get(3), get(4)
        for name, value in (("X", x), ("W", w), ("R", r)):
            if len(shape_of(value)) != 3:
                raise ValueError(f"{cls.__name__} input {name} must be 3-D, got shape "
                                 f"{shape_of(value)}")
        dtype = dtype_of(x)
        layout = attr.get("layout", 0)
        if layout == 1:
            x = bb.normalize(op.permute_dims(x, [1, 0, 2]))
        seq, batch, _ = shape_of(x)
        dirs, _, hidden = shape_of(r)
        direction = _text(attr.get("direction", "forward"))
        names = [_text(n) for n in attr.get("activations", ())]
        per_dir = len(cls.default_activations)
        names = names or list(cls.default_activations) * dirs
        alphas = list(attr.get("activation_alpha", ())) + [None] * len(names)
        betas = list(attr.get("activation_beta", ())) + [None] * len(names)
        clip = attr.get("clip")
        initial = [get(5 + i) for i in range(cls.states)]
        if seq_lens is not None and direction != "forward":
            raise ValueError(f"{cls.__name__} with sequence_lens supports only direction "
                             "forward")
        ys, finals = [], [[] for _ in range(cls.states)]
        for d in range(dirs):
            acts = [_activation(names[d * per_dir + i], alphas[d * per_dir + i],
                                betas[d * per_dir + i], dtype) for i in range(per_dir)]
            reverse = direction == "reverse" or (direction == "bidirectional" and d == 1)
            w_d = op.take(w, relax.const(d, "int64"), axis=0)
            r_d = bb.normalize(op.permute_dims(op.take(r, relax.const(d, "int64"), axis=0)))
            proj = cls._matmul(x, op.permute_dims(w_d))  # (seq, batch, gates*H)
            size = cls.gates * hidden
            b_d = op.take(bias, relax.const(d, "int64"), axis=0) if bias is not None else None
            if b_d is not None:
                proj = op.add(proj, op.add(op.strided_slice(b_d, [0], [0], [size]),
                                           op.strided_slice(b_d, [0], [size], [2 * size])))
                rb = bb.normalize(op.strided_slice(b_d, [0], [size], [2 * size]))
            else:
                rb = None
            proj = bb.normalize(proj)
            state = []
            for i in range(cls.states):
                if initial[i] is not None:
                    state.append(bb.normalize(op.take(initial[i], relax.const(d, "int64"),
                                                      axis=0)))
                else:
                    state.append(bb.normalize(op.zeros((batch, hidden), dtype)))
            extra = cls._direction_extras(bb, inputs, attr, d, hidden, rb)
            steps = range(seq - 1, -1, -1) if reverse else range(seq)
            outputs = [None] * seq
            for t in steps:
                x_t = bb.normalize(op.squeeze(op.strided_slice(proj, [0], [t], [t + 1]), [0]))
                new = cls._cell(bb, x_t, r_d, state, acts, clip, hidden, extra, dtype)
                if seq_lens is not None:
                    alive = op.reshape(op.less(relax.const(t, dtype_of(seq_lens)), seq_lens),
                                       (batch, 1))
                    new = [bb.normalize(op.where(alive, n, s)) for n, s in zip(new, state)]
                    outputs[t] = bb.normalize(op.where(alive, new[0], op.zeros_like(new[0])))
                else:
                    outputs[t] = new[0]
                state = new
            ys.append(bb.normalize(op.stack(outputs, axis=0)))  # (seq, batch, H)
            for i in range(cls.states):
                finals[i].append(state[i])
        y = bb.normalize(op.stack(ys, axis=1))  # (seq, dirs, batch, H)
        finals = [bb.normalize(op.stack(f, axis=0)) for f in finals]  # (dirs, batch, H)
        if layout == 1:
            y = op.permute_dims(y, [2, 0, 1, 3])
            finals = [op.permute_dims(f, [1, 0, 2]) for f in finals]
        return relax.Tuple([bb.normalize(v) for v in [y] + finals])

    @classmethod
    def _direction_extras(cls, bb, inputs, attr, d, hidden, rb):
        return {"rb": rb}

    @staticmethod
    def _gate(gates, index, hidden):
        return op.strided_slice(gates, [1], [index * hidden], [(index + 1) * hidden])

    @staticmethod
    def _clip(x, clip):
        return x if clip is None else op.clip(x, -clip, clip)


@register("RNN")
class RNN(_Recurrent):
    gates, states, default_activations = 1, 1, ("Tanh",)

    @classmethod
    def _cell(cls, bb, x_t, r_d, state, acts, clip, hidden, extra, dtype):
        pre = op.add(x_t, op.matmul(state[0], r_d))
        return [bb.normalize(acts[0](cls._clip(pre, clip)))]


@register("GRU")
class GRU(_Recurrent):
    gates, states, default_activations = 3, 1, ("Sigmoid", "Tanh")

    @classmethod
    def _direction_extras(cls, bb, inputs, attr, d, hidden, rb):
        return {"rb": rb, "linear_before_reset": attr.get("linear_before_reset", 0)}

    @classmethod
    def _cell(cls, bb, x_t, r_d, state, acts, clip, hidden, extra, dtype):
        f, g = acts
        h_prev = state[0]
        g_ = cls._gate
        r_zr = op.strided_slice(r_d, [1], [0], [2 * hidden])
        r_h = op.strided_slice(r_d, [1], [2 * hidden], [3 * hidden])
        zr = op.add(op.strided_slice(x_t, [1], [0], [2 * hidden]), op.matmul(h_prev, r_zr))
        z = bb.normalize(f(cls._clip(g_(zr, 0, hidden), clip)))
        r = bb.normalize(f(cls._clip(g_(zr, 1, hidden), clip)))
        x_h = g_(x_t, 2, hidden)
        rb = extra["rb"]
        rb_h = op.strided_slice(rb, [0], [2 * hidden], [3 * hidden]) if rb is not None else None
        if extra["linear_before_reset"]:
            # x_t already holds Wb_h + Rb_h; the reset gate scales (H R_h^T + Rb_h)
            rec = op.matmul(h_prev, r_h)
            if rb_h is not None:
                rec = op.add(rec, rb_h)
                x_h = op.subtract(x_h, rb_h)
            pre = op.add(x_h, op.multiply(r, rec))
        else:
            pre = op.add(x_h, op.matmul(op.multiply(r, h_prev), r_h))
        h_tilde = g(cls._clip(pre, clip))
        one = const(1.0, dtype)
        h = op.add(op.multiply(op.subtract(one, z), h_tilde), op.multiply(z, h_prev))
        return [bb.normalize(h)]


@register("LSTM")
class LSTM(_Recurrent):
    gates, states, default_activations = 4, 2, ("Sigmoid", "Tanh", "Tanh")

    @classmethod
    def _direction_extras(cls, bb, inputs, attr, d, hidden, rb):
        peep = inputs[7] if len(inputs) > 7 else None
        if peep is None:
            return {"p": None, "input_forget": attr.get("input_forget", 0)}
        p_d = bb.normalize(op.take(peep, relax.const(d, "int64"), axis=0))
        parts = [bb.normalize(op.strided_slice(p_d, [0], [i * hidden], [(i + 1) * hidden]))
                 for i in range(3)]  # i, o, f
        return {"p": parts, "input_forget": attr.get("input_forget", 0)}

    @classmethod
    def _cell(cls, bb, x_t, r_d, state, acts, clip, hidden, extra, dtype):
        f, g, h = acts
        h_prev, c_prev = state
        gates = bb.normalize(op.add(x_t, cls._matmul(h_prev, r_d)))
        g_ = cls._gate
        pi, po, pf = extra["p"] or (None, None, None)
        pre_i, pre_o, pre_f, pre_c = (g_(gates, k, hidden) for k in range(4))
        if pi is not None:
            pre_i = op.add(pre_i, op.multiply(pi, c_prev))
            pre_f = op.add(pre_f, op.multiply(pf, c_prev))
        i = bb.normalize(f(cls._clip(pre_i, clip)))
        fg = f(cls._clip(pre_f, clip))
        if extra["input_forget"]:
            fg = op.subtract(const(1.0, dtype), i)
        c_tilde = g(cls._clip(pre_c, clip))
        c = bb.normalize(op.add(op.multiply(fg, c_prev), op.multiply(i, c_tilde)))
        if po is not None:
            pre_o = op.add(pre_o, op.multiply(po, c))
        o = f(cls._clip(pre_o, clip))
        return [bb.normalize(op.multiply(o, h(c))), c]
