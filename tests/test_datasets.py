"""rfdiff.datasets: IDX round trip and corrupt files."""
import numpy as np
import pytest

from rfdiff.datasets import read_idx, write_idx


@pytest.mark.parametrize("dtype", ["uint8", "int8", "int16", "int32", "float32", "float64"])
def test_round_trip(tmp_path, dtype):
    a = (np.random.default_rng(0).standard_normal((5, 4, 3)) * 50).astype(dtype)
    write_idx(tmp_path / "a.idx", a)
    b = read_idx(tmp_path / "a.idx", shape=(None, 4, 3), dtype=dtype)
    assert b.dtype == np.dtype(dtype) and b.shape == a.shape
    np.testing.assert_array_equal(a, b)


def test_mnist_layout_bytes(tmp_path):
    # an MNIST-style label file by hand: magic 0x00000801, n = 3 (big-endian), values
    (tmp_path / "l.idx").write_bytes(bytes([0, 0, 8, 1, 0, 0, 0, 3, 7, 2, 1]))
    np.testing.assert_array_equal(read_idx(tmp_path / "l.idx"), [7, 2, 1])


def test_corrupt_files(tmp_path):
    a = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / "a.idx", a)
    raw = (tmp_path / "a.idx").read_bytes()
    (tmp_path / "magic.idx").write_bytes(b"\x01\x00" + raw[2:])
    with pytest.raises(ValueError, match="magic"):
        read_idx(tmp_path / "magic.idx")
    (tmp_path / "type.idx").write_bytes(raw[:2] + b"\x07" + raw[3:])
    with pytest.raises(ValueError, match="magic"):
        read_idx(tmp_path / "type.idx")
    (tmp_path / "short.idx").write_bytes(raw[:-1])
    with pytest.raises(ValueError, match="truncated"):
        read_idx(tmp_path / "short.idx")
    (tmp_path / "head.idx").write_bytes(raw[:6])
    with pytest.raises(ValueError, match="truncated"):
        read_idx(tmp_path / "head.idx")
    (tmp_path / "long.idx").write_bytes(raw + b"\x00")
    with pytest.raises(ValueError, match="over-long"):
        read_idx(tmp_path / "long.idx")
    with pytest.raises(ValueError, match="shape"):
        read_idx(tmp_path / "a.idx", shape=(None, 28, 28))
    with pytest.raises(ValueError, match="dtype"):
        read_idx(tmp_path / "a.idx", dtype="float32")
    with pytest.raises(ValueError, match="dtype"):
        write_idx(tmp_path / "b.idx", np.zeros(3, dtype=np.complex128))
