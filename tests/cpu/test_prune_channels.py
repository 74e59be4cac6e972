"""mcc.prune_channels / --prune: channels physically removed, outputs kept (zero) or drift
reported (ratio), checked against ONNX Runtime and eager PyTorch."""

import io

import numpy as np
import onnx
import pytest
import tvm
from tvm import relax

import mcc
from mcc.frontends import import_model
from mcc.passes import count_ops, prune_channels

torch = pytest.importorskip("torch")
nn = torch.nn
prune = pytest.importorskip("torch.nn.utils.prune")


def _export(model, shape, name="x"):
    buffer = io.BytesIO()
    torch.onnx.export(model, (torch.randn(*shape),), buffer, input_names=[name],
                      output_names=["y"], opset_version=17, dynamo=False)
    return onnx.load_from_string(buffer.getvalue())


def _zero_filters(module, amount):
    """What users do before mcc: ln_structured on output channels, then make it permanent."""
    prune.ln_structured(module, "weight", amount=amount, n=1, dim=0)
    prune.remove(module, "weight")


def _bn(channels):
    """Batch norm with non-trivial statistics, so a zero filter leaves a constant channel."""
    bn = nn.BatchNorm2d(channels)
    with torch.no_grad():
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-1, 1)
    return bn


def _run(mod, x):
    mod = tvm.transform.Sequential([relax.transform.DecomposeOpsForInference(),
                                    relax.transform.LegalizeOps()])(mod)
    vm = relax.VirtualMachine(tvm.compile(mod, target="llvm"), tvm.cpu())
    return vm["main"](tvm.runtime.tensor(x)).numpy()


def _conv_channels(mod):
    """(out, in) channels of every conv2d weight in main, in order."""
    shapes = []

    def visit(expr):
        if isinstance(expr, relax.Call) and getattr(expr.op, "name", "") == "relax.nn.conv2d":
            shapes.append(tuple(int(d) for d in expr.args[1].ty.shape.values[:2]))

    relax.analysis.post_order_visit(mod["main"], visit)
    return shapes


class ResidualNet(nn.Module):
    """conv+BN -> relu -> 3x3 padded conv+BN -> residual add -> pool -> dense -> dense."""

    def __init__(self, width=8):
        super().__init__()
        self.c1, self.b1 = nn.Conv2d(3, width, 3, padding=1), _bn(width)
        self.c2, self.b2 = nn.Conv2d(width, width, 3, padding=1, bias=False), _bn(width)
        self.fc1, self.fc2 = nn.Linear(width, 12), nn.Linear(12, 5)

    def forward(self, x):
        y = torch.relu(self.b1(self.c1(x)))
        z = torch.relu(self.b2(self.c2(y)) + y)
        return self.fc2(torch.relu(self.fc1(z.mean((2, 3)))))


def _residual_net(zero_both=True, width=8):
    torch.manual_seed(0)
    net = ResidualNet(width).eval()
    with torch.no_grad():  # the same channels zero in both branches of the residual add
        for i in range(1, width, 3) if width > 8 else (1, 4, 6):
            net.c1.weight[i] = 0
            if zero_both:
                net.c2.weight[i] = 0
    _zero_filters(net.fc1, 0.25)
    return net


def test_zero_prune_removes_channels_through_bn_residual_and_dense():
    net = _residual_net()
    mod = import_model(_export(net, (1, 3, 6, 6))).mod
    pruned, report = prune_channels(mod)
    # 3 residual channels go from both convs and the dense input; 3 dense features go
    assert _conv_channels(pruned) == [(5, 3), (5, 5)]
    assert [(c.out_before, c.out_after) for c in report.layers] == [(8, 5), (8, 5), (12, 9),
                                                                    (5, 5)]
    assert report.layers[2].in_after == 5 and report.channels_removed == 6
    assert report.after.params < report.before.params
    assert report.after.flops < report.before.flops
    assert report.bias_maps == 1  # c1's constant channels reach c2 through zero padding
    x = np.random.default_rng(0).standard_normal((1, 3, 6, 6)).astype(np.float32)
    expected = net(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(_run(pruned, x), expected, rtol=1e-5, atol=1e-5)


def test_residual_channel_zero_in_one_branch_only_is_kept():
    net = _residual_net(zero_both=False)
    pruned, report = prune_channels(import_model(_export(net, (1, 3, 6, 6))).mod)
    assert _conv_channels(pruned) == [(8, 3), (8, 8)]
    assert report.channels_removed == 3  # only the dense features


class ConcatDepthwiseNet(nn.Module):
    """Two branches concatenated, then a depthwise 3x3 (padded) and a pointwise conv."""

    def __init__(self):
        super().__init__()
        self.a, self.ba = nn.Conv2d(3, 6, 1), _bn(6)
        self.b = nn.Conv2d(3, 4, 3, padding=1)
        self.dw, self.bdw = nn.Conv2d(10, 10, 3, padding=1, groups=10), _bn(10)
        self.pw = nn.Conv2d(10, 7, 1)

    def forward(self, x):
        y = torch.cat([torch.relu(self.ba(self.a(x))), torch.clamp(self.b(x), 0, 6)], 1)
        return self.pw(torch.clamp(self.bdw(self.dw(y)), 0, 6))


def test_zero_prune_through_concat_and_depthwise():
    torch.manual_seed(1)
    net = ConcatDepthwiseNet().eval()
    with torch.no_grad():
        net.a.weight[[0, 2, 3, 4]] = 0  # four zero filters in branch a (concat slots 0-4)
        net.a.bias[[2, 4]] = 0
        net.ba.running_mean[[2, 4]] = 0
        net.ba.bias[2], net.ba.bias[4] = 2.0, -2.0  # slot 2 relu(2) = 2, slot 4 relu(-2) = 0
        net.dw.weight[[0, 3, 5]] = 0  # slots 0 and 3 die in the depthwise conv too
        net.b.weight[1], net.b.bias[1] = 0, 2.0  # slot 7: clip(2) = 2
    pruned, report = prune_channels(import_model(_export(net, (1, 3, 10, 10))).mod)
    # 0, 3: zero everywhere; 4: zero after the relu, and the depthwise keeps a zero zero;
    # 2 and 7: constant 2, but the padded depthwise makes it non-constant at the borders;
    # 5: its depthwise filter is zero but its input is not constant
    assert _conv_channels(pruned) == [(3, 3), (4, 3), (7, 1), (7, 7)]
    assert report.layers[2].removed == (0, 3, 4)
    x = np.random.default_rng(1).standard_normal((1, 3, 10, 10)).astype(np.float32)
    expected = net(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(_run(pruned, x), expected, rtol=1e-5, atol=1e-5)
    assert count_ops(pruned)["relax.concat"] == 1


def _grouped_net(zero_in, zero_out):
    torch.manual_seed(3)
    net = nn.Sequential(nn.Conv2d(3, 8, 1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1, groups=2),
                        nn.ReLU(), nn.Conv2d(8, 4, 1)).eval()
    with torch.no_grad():
        net[0].weight[zero_in] = 0  # constant relu(1.5) channels into the grouped conv
        net[0].bias[zero_in] = 1.5
        net[2].weight[zero_out] = 0
    return net


def test_grouped_conv_loses_the_same_channels_from_every_group():
    """Groups of 4: input channels 1 and 6 (one per group) and filters 0 and 5 (one per
    group) go; the constant inputs fold into the grouped conv's border-aware bias."""
    net = _grouped_net([1, 6], [0, 5])
    pruned, report = prune_channels(import_model(_export(net, (1, 3, 6, 6))).mod)
    assert _conv_channels(pruned) == [(6, 3), (6, 3), (4, 6)]  # grouped: 2 groups of 3 -> 3
    assert report.layers[1].label.startswith("grouped")
    assert (report.layers[1].in_after, report.layers[1].out_after) == (6, 6)
    assert report.bias_maps == 1
    x = np.random.default_rng(3).standard_normal((1, 3, 6, 6)).astype(np.float32)
    expected = net(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(_run(pruned, x), expected, rtol=1e-5, atol=1e-5)


def test_grouped_conv_uneven_zeros_keep_the_groups_equal():
    """Zero filters 1 and 2 (both in group 0) feeding the grouped conv: removing them would
    leave groups of 2 and 4, so they stay; filters 0 and 5 of the grouped conv still go."""
    net = _grouped_net([1, 2], [0, 5])
    pruned, report = prune_channels(import_model(_export(net, (1, 3, 6, 6))).mod)
    assert _conv_channels(pruned) == [(8, 3), (6, 4), (4, 6)]
    x = np.random.default_rng(3).standard_normal((1, 3, 6, 6)).astype(np.float32)
    expected = net(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(_run(pruned, x), expected, rtol=1e-5, atol=1e-5)


def test_ratio_prune_takes_the_same_share_from_every_group():
    net = _grouped_net([], [])
    pruned, report = prune_channels(import_model(_export(net, (1, 3, 6, 6))).mod, ratio=0.5)
    first, grouped = report.layers[0], report.layers[1]
    assert (grouped.in_after, grouped.out_after) == (4, 4)  # 2 of each group of 4
    assert (4, 2) in _conv_channels(pruned)
    assert sorted(c // 4 for c in grouped.removed) == [0, 0, 1, 1]
    # the pruned model is the model with the chosen filters zeroed (biases kept)
    with torch.no_grad():
        net[0].weight[list(first.removed)] = 0
        net[2].weight[list(grouped.removed)] = 0
    x = np.random.default_rng(3).standard_normal((1, 3, 6, 6)).astype(np.float32)
    expected = net(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(_run(pruned, x), expected, rtol=1e-5, atol=1e-5)


def test_compile_ratio_prune_of_a_grouped_conv_is_verified_against_the_masked_model():
    compiled = mcc.compile(_export(_grouped_net([], []), (1, 3, 6, 6)), prune=0.5)
    assert compiled.report["verify"]["ok"]
    assert "removed filters zeroed" in compiled.report["verify"]["reference"]
    grouped = [c for c in compiled.report["prune"]["layers"] if c["layer"].startswith("grouped")]
    assert grouped[0]["in"] == [8, 4] and grouped[0]["out"] == [8, 4]


@pytest.mark.parametrize("include_pad", [True, False])
def test_padded_average_pool_keeps_a_constant_channel_only_when_borders_differ(include_pad):
    torch.manual_seed(2)
    net = nn.Sequential(nn.Conv2d(3, 6, 3), nn.AvgPool2d(3, 1, 1, count_include_pad=include_pad),
                        nn.Conv2d(6, 4, 1)).eval()
    with torch.no_grad():
        net[0].weight[[1, 4]] = 0
        net[0].bias[[1, 4]] = 1.5  # a constant 1.5: averaged with padded zeros at the borders
    pruned, report = prune_channels(import_model(_export(net, (1, 3, 8, 8))).mod)
    assert report.channels_removed == (0 if include_pad else 2)
    x = np.random.default_rng(2).standard_normal((1, 3, 8, 8)).astype(np.float32)
    expected = net(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(_run(pruned, x), expected, rtol=1e-5, atol=1e-5)


def test_cli_prune_zero_is_lossless_smaller_and_recorded(tmp_path, save_onnx, cli):
    net = _residual_net(width=48)  # wide enough that weights, not code, dominate the .so
    path = save_onnx(_export(net, (1, 3, 6, 6)))
    big = mcc.compile(path, rtol=1e-5, atol=1e-5).export(tmp_path / "u.so")
    small = tmp_path / "p.so"
    result = cli("compile", path, "--prune", "zero", "--rtol", "1e-5", "--atol", "1e-5",
                 "-o", small)  # verified against ONNX Runtime at 1e-5
    assert result.exit_code == 0, result.stderr
    assert "zero filters: 19 channels removed" in result.stderr
    assert "verify" in result.stderr and "ok" in result.stderr
    assert small.stat().st_size < big.stat().st_size
    assert mcc.load(small).metadata["passes"][0] == "mcc.PruneChannels"
    info = mcc.load(small).metadata["prune"]
    assert info["mode"] == "zero" and not info["fine_tuned"] and info["channels_removed"] == 19
    assert info["after"]["params"] < info["before"]["params"]
    shown = cli("info", small).output
    assert "pruning:  zero filters: 19 channels removed" in shown
    assert "conv2d1 3x3      in    48 -> 32    out    48 -> 32" in shown


def test_torch_module_prune_zero_folds_unfused_batch_norm():
    net = _residual_net()
    compiled = mcc.compile(net, example_inputs=(torch.randn(1, 3, 6, 6),), prune="zero",
                           rtol=1e-5, atol=1e-5)
    assert compiled.report["verify"]["reference"] == "pytorch"
    assert compiled.report["verify"]["ok"]
    assert compiled.report["prune"]["channels_removed"] == 6


def test_torch_module_ratio_prune_reports_drift_and_says_verify_is_skipped():
    lines = []
    compiled = mcc.compile(_residual_net(zero_both=False), prune=0.5, progress=lines.append,
                           example_inputs=(torch.randn(1, 3, 6, 6),))
    info = compiled.report["prune"]
    assert info["mode"] == "ratio" and info["ratio"] == 0.5 and info["criterion"] == "l1"
    assert [c["out"] for c in info["layers"]] == [[8, 4], [8, 4], [12, 6], [5, 5]]
    assert "seeded random inputs" in info["drift"]["samples"]
    drift = next(iter(info["drift"]["outputs"].values()))
    assert drift["rel_l2"] > 0  # outputs did move
    assert "verify" not in compiled.report
    assert any("verify   skipped: no reference" in line for line in lines)


def test_bad_prune_values_are_one_line_errors(save_onnx, cli):
    from conftest import assert_one_line_error, conv_model

    path = save_onnx(conv_model())
    assert_one_line_error(cli("compile", path, "--prune", "half"), "--prune", "'half'")
    assert_one_line_error(cli("compile", path, "--prune", "1.5"), "between 0 and 1")


# ratio pruning on a trained classifier ------------------------------------------------------

class DigitsNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1, self.b1 = nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16)
        self.c2, self.b2 = nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32)
        self.fc1, self.fc2 = nn.Linear(32, 32), nn.Linear(32, 10)

    def forward(self, x):
        y = torch.relu(self.b1(self.c1(x)))
        y = torch.relu(self.b2(self.c2(y)))
        y = torch.flatten(nn.functional.adaptive_avg_pool2d(y, 1), 1)
        return self.fc2(torch.relu(self.fc1(y)))


def _digits():
    datasets = pytest.importorskip("sklearn.datasets")
    digits = datasets.load_digits()
    x = (digits.images / 16.0).astype(np.float32)[:, None]
    y = digits.target.astype(np.int64)
    order = np.random.default_rng(0).permutation(len(x))
    train, test = order[:1400], order[1400:]
    return x[train], y[train], x[test], y[test]


def _train_digits(x, y):
    """~7 s on one thread (two threads on the shared 2 cores took ten times longer)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    net = DigitsNet()
    opt = torch.optim.Adam(net.parameters(), lr=0.02)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    try:
        for _ in range(30):
            for i in range(0, len(xt), 128):
                opt.zero_grad()
                nn.functional.cross_entropy(net(xt[i:i + 128]), yt[i:i + 128]).backward()
                opt.step()
    finally:
        torch.set_num_threads(threads)
    return net.eval()


def test_ratio_prune_on_digits_cnn_reports_accuracy_and_matches_masked_model(tmp_path):
    x_train, y_train, x_test, y_test = _digits()
    net = _train_digits(x_train, y_train)
    np.savez(tmp_path / "calib.npz", x=x_test)
    compiled = mcc.compile(_export(net, (1, 1, 8, 8)), prune=0.3,
                           calibration=tmp_path / "calib.npz")
    info = compiled.report["prune"]
    # outputs move by design (drift reported); verified against ORT on the model with the
    # removed filters zeroed
    assert compiled.report["verify"]["ok"]
    assert "removed filters zeroed" in compiled.report["verify"]["reference"]
    changes = {c["layer"]: c for c in info["layers"]}
    assert changes["conv2d0 3x3"]["out"] == [16, 12] and changes["conv2d1 3x3"]["out"] == [32, 23]
    assert changes["dense2"]["out"] == [32, 23] and changes["dense3"]["out"] == [10, 10]
    assert info["after"]["flops"] < 0.6 * info["before"]["flops"]
    drift = info["drift"]["outputs"]["y"]
    assert info["drift"]["samples"].startswith("64 samples")  # the first 64 of the file

    def accuracy(logits):
        return float((np.argmax(logits, -1) == y_test).mean())

    with torch.no_grad():
        before = net(torch.from_numpy(x_test)).numpy()
    after = np.concatenate([compiled.run({"x": x_test[i:i + 1]})["y"] for i in range(len(x_test))])
    print(f"\ndigits CNN, --prune 0.3 (l1, no fine-tuning): accuracy {accuracy(before):.3f} -> "
          f"{accuracy(after):.3f} on {len(y_test)} held-out images; "
          f"top-1 agreement {drift['top1_agreement']:.3f}")
    assert accuracy(before) > 0.9
    agreement = float((np.argmax(after[:64], -1) == np.argmax(before[:64], -1)).mean())
    assert drift["top1_agreement"] == pytest.approx(agreement)
    # the pruned module is exactly the model with those filters zeroed (biases and BN kept)
    with torch.no_grad():
        for module, change in zip((net.c1, net.c2, net.fc1, net.fc2), info["layers"]):
            module.weight[list(change["removed"])] = 0
        masked = net(torch.from_numpy(x_test)).numpy()
    np.testing.assert_allclose(after, masked, rtol=1e-4, atol=1e-4)


def test_zero_prune_removes_channels_their_consumers_weigh_with_zeros():
    """Input-side zeros: c2 and the dense head both ignore channels 2 and 5 of c1 (all-zero
    input slices in every consumer), so c1's filters 2 and 5 go, though they are not zero;
    channel 6 is ignored by c2 but read by the head: kept."""
    torch.manual_seed(4)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.c1, self.b1 = nn.Conv2d(3, 8, 3, padding=1), _bn(8)
            self.c2 = nn.Conv2d(8, 6, 3, padding=1)
            self.fc = nn.Linear(8 + 6, 4)

        def forward(self, x):
            y = torch.relu(self.b1(self.c1(x)))
            z = torch.relu(self.c2(y))
            return self.fc(torch.cat([y.mean((2, 3)), z.mean((2, 3))], 1))

    net = Net().eval()
    with torch.no_grad():
        net.c2.weight[:, [2, 5, 6]] = 0
        net.fc.weight[:, [2, 5]] = 0  # the head's slots for y's channels 2 and 5
    pruned, report = prune_channels(import_model(_export(net, (1, 3, 6, 6))).mod)
    assert _conv_channels(pruned) == [(6, 3), (6, 6)]
    assert report.layers[0].removed == (2, 5) and report.channels_removed == 2
    assert report.after.params < report.before.params
    x = np.random.default_rng(4).standard_normal((1, 3, 6, 6)).astype(np.float32)
    expected = net(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(_run(pruned, x), expected, rtol=1e-5, atol=1e-5)
    # read by one consumer: kept (the dense head reads channel 2 now)
    with torch.no_grad():
        net.fc.weight[0, 2] = 0.5
    _, report = prune_channels(import_model(_export(net, (1, 3, 6, 6))).mod)
    assert report.layers[0].removed == (5,)


def test_ratio_prune_with_random_calibration_int8(save_onnx):
    """--prune RATIO --quantize int8 --calibration random: the drift is measured on seeded
    random inputs too (it read 'random' as a file name)."""
    from conftest import conv_bn_model

    compiled = mcc.compile(save_onnx(conv_bn_model()), prune=0.3, quantize="int8",
                           calibration="random", verify=False)
    assert "--calibration random" in compiled.report["prune"]["drift"]["samples"]
