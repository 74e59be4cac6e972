import numpy as np
import pytest

from mcc.driver.sample_data import load_samples, random_samples
from mcc.errors import MccError
from mcc.runtime.tensors import TensorSpec

IMAGE = [TensorSpec("image", (1, 3, 4, 4), "float32")]
TWO = [TensorSpec("ids", (1, 5), "int64"), TensorSpec("mask", (1, 5), "int64")]


def test_npz_first_axis_counts_batch_one_samples(tmp_path):
    data = np.arange(4 * 3 * 4 * 4, dtype=np.float32).reshape(4, 3, 4, 4)
    np.savez(tmp_path / "cal.npz", image=data)
    samples = load_samples(tmp_path / "cal.npz", IMAGE)
    assert len(samples) == 4
    assert samples[2]["image"].shape == (1, 3, 4, 4)
    np.testing.assert_array_equal(samples[2]["image"][0], data[2])


def test_npz_with_explicit_sample_axis_and_max_samples(tmp_path):
    np.savez(tmp_path / "cal.npz", image=np.zeros((6, 1, 3, 4, 4), np.float32))
    assert len(load_samples(tmp_path / "cal.npz", IMAGE, max_samples=5)) == 5


def test_directory_of_npy_and_npz_in_name_order(tmp_path):
    np.save(tmp_path / "b.npy", np.full((2, 3, 4, 4), 2, np.float32))
    np.savez(tmp_path / "a.npz", image=np.full((1, 3, 4, 4), 1, np.float32))
    (tmp_path / "notes.txt").write_text("ignored")
    samples = load_samples(tmp_path, IMAGE)
    assert [float(s["image"].max()) for s in samples] == [1.0, 2.0, 2.0]


def test_multi_input_npz(tmp_path):
    np.savez(tmp_path / "cal.npz", ids=np.ones((3, 5), np.int64), mask=np.ones((3, 5), np.int64))
    samples = load_samples(tmp_path / "cal.npz", TWO)
    assert len(samples) == 3 and set(samples[0]) == {"ids", "mask"}


def test_random_samples_are_seeded_and_distinct():
    a, b = random_samples(IMAGE, 2), random_samples(IMAGE, 2)
    np.testing.assert_array_equal(a[1]["image"], b[1]["image"])
    assert not np.array_equal(a[0]["image"], a[1]["image"])


@pytest.mark.parametrize("arrays, specs, message", [
    ({"img": np.zeros((2, 3, 4, 4), np.float32)}, IMAGE,
     "array 'img' that is not a model input; the model's inputs are: image"),
    ({"ids": np.zeros((2, 5), np.int64)}, TWO, "has no array for input 'mask' .it has: ids"),
    ({"image": np.zeros((2, 3, 4, 4))}, IMAGE,
     "sample 0: input 'image' has dtype float64, expected float32"),
    ({"image": np.zeros((2, 3, 5, 4), np.float32)}, IMAGE, "sample 0: input 'image' has shape"),
    ({"ids": np.zeros((2, 5), np.int64), "mask": np.zeros((3, 5), np.int64)}, TWO,
     "inputs hold different numbers of samples .ids: 2, mask: 3"),
    ({"image": np.zeros((0, 3, 4, 4), np.float32)}, IMAGE, "holds no samples"),
    ({"image": np.zeros((3,), np.float32)}, IMAGE, "expected .samples, ...."),
])
def test_bad_data_is_one_line_naming_file_and_input(tmp_path, arrays, specs, message):
    np.savez(tmp_path / "cal.npz", **arrays)
    with pytest.raises(MccError, match=message) as err:
        load_samples(tmp_path / "cal.npz", specs)
    assert "cal.npz" in str(err.value) and "\n" not in str(err.value)


def test_missing_unreadable_and_wrong_kind(tmp_path):
    with pytest.raises(MccError, match="not found"):
        load_samples(tmp_path / "nope.npz", IMAGE)
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(MccError, match="not a readable NumPy file"):
        load_samples(tmp_path / "bad.npz", IMAGE)
    (tmp_path / "data.csv").write_text("1,2")
    with pytest.raises(MccError, match="must be an .npz file or a directory"):
        load_samples(tmp_path / "data.csv", IMAGE)
    (tmp_path / "empty").mkdir()
    with pytest.raises(MccError, match="holds no .npz or .npy files"):
        load_samples(tmp_path / "empty", IMAGE)
    np.save(tmp_path / "one.npy", np.zeros((1, 5), np.int64))
    with pytest.raises(MccError, match="only feed a one-input model"):
        load_samples(tmp_path / "one.npy", TWO)
