"""Local data sets: the IDX file format of MNIST (nothing is downloaded).

IDX layout (big-endian): two zero bytes, a type code (0x08 uint8, 0x09 int8,
0x0B int16, 0x0C int32, 0x0D float32, 0x0E float64), the number of
dimensions ``ndim``, then ``ndim`` uint32 sizes, then the values in C order.
:func:`read_idx` checks every part and raises ValueError saying what is wrong
(magic number, truncated or over-long file, shape or dtype not the expected).
"""
from __future__ import annotations

import os

import numpy as np

__all__ = ["read_idx", "write_idx", "IDX_TYPES"]

#: IDX type code -> big-endian NumPy dtype
IDX_TYPES = {0x08: np.dtype(">u1"), 0x09: np.dtype(">i1"), 0x0B: np.dtype(">i2"),
             0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}
_CODE = {dt.newbyteorder("=").str[1:]: code for code, dt in IDX_TYPES.items()}


def read_idx(path, *, shape=None, dtype=None) -> np.ndarray:
    """The array stored in the IDX file ``path`` (native byte order).

    ``shape``: optional expected shape, ``None`` entries free (e.g.
    ``(None, 28, 28)`` for MNIST images); ``dtype``: optional expected dtype.
    """
    path = os.fspath(path)
    with open(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4:
        raise ValueError(f"{path}: truncated IDX file ({len(raw)} bytes, the header needs 4)")
    if raw[0] != 0 or raw[1] != 0 or raw[2] not in IDX_TYPES:
        raise ValueError(f"{path}: not an IDX file (magic number 0x{raw[:4].hex()}; expected 0x0000TTNN "
                         f"with type TT in {', '.join(f'{c:02x}' for c in IDX_TYPES)})")
    dt, ndim = IDX_TYPES[raw[2]], raw[3]
    head = 4 + 4 * ndim
    if len(raw) < head:
        raise ValueError(f"{path}: truncated IDX header ({len(raw)} bytes, {ndim} dimensions need {head})")
    dims = tuple(int(s) for s in np.frombuffer(raw, ">u4", count=ndim, offset=4))
    need = head + int(np.prod(dims, dtype=np.int64)) * dt.itemsize
    if len(raw) != need:
        what = "truncated" if len(raw) < need else "over-long"
        raise ValueError(f"{path}: {what} IDX file: shape {dims} of {dt.newbyteorder('=')} needs {need} bytes, "
                         f"the file has {len(raw)}")
    arr = np.frombuffer(raw, dt, offset=head).reshape(dims).astype(dt.newbyteorder("="))
    if shape is not None:
        shape = tuple(shape)
        if len(shape) != arr.ndim or any(s is not None and s != a for s, a in zip(shape, arr.shape)):
            raise ValueError(f"{path}: shape must be {shape} (None = any), the file has {arr.shape}")
    if dtype is not None and arr.dtype != np.dtype(dtype):
        raise ValueError(f"{path}: dtype must be {np.dtype(dtype)}, the file has {arr.dtype}")
    return arr


def write_idx(path, array) -> None:
    """Write ``array`` (a dtype of :data:`IDX_TYPES`) as an IDX file."""
    a = np.asarray(array)
    key = a.dtype.newbyteorder("=").str[1:]
    if key not in _CODE:
        raise ValueError(f"array dtype must be one of uint8, int8, int16, int32, float32, float64, got {a.dtype}")
    if a.ndim > 255:
        raise ValueError(f"array must have at most 255 dimensions, got {a.ndim}")
    code = _CODE[key]
    with open(os.fspath(path), "wb") as f:
        f.write(bytes([0, 0, code, a.ndim]))
        f.write(np.asarray(a.shape, ">u4").tobytes())
        f.write(np.ascontiguousarray(a, IDX_TYPES[code]).tobytes())
