"""Reader for the IDX format of MNIST and Fashion-MNIST, gzipped or not."""

from __future__ import annotations

import gzip
import math
import os
from pathlib import Path

import numpy as np
import torch

from visionkit._checks import check_path
from visionkit.exceptions import DataError

__all__ = ["read_idx"]

_DTYPES: dict[int, tuple[str, int]] = {
    0x08: (">u1", 1),
    0x09: (">i1", 1),
    0x0B: (">i2", 2),
    0x0C: (">i4", 4),
    0x0D: (">f4", 4),
    0x0E: (">f8", 8),
}
_GZIP_MAGIC = b"\x1f\x8b"
_MAX_DIMS = 32  # NumPy's limit (64 since NumPy 2); MNIST files have 1 or 3


def read_idx(path: str | os.PathLike[str]) -> torch.Tensor:
    """Read an IDX file (``.gz`` or plain, detected from its bytes) into a tensor.

    The header is two zero bytes, a type code, the number of dimensions, then each
    dimension as a big-endian ``uint32``; the data follow, big-endian.

    Raises:
        DataError: if the file is missing, is not IDX, announces more than 32 dimensions,
            or is shorter or longer than its header says; the message names the file.

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "labels-idx1-ubyte"
        >>> _ = p.write_bytes(bytes([0, 0, 8, 1, 0, 0, 0, 3, 7, 2, 1]))
        >>> read_idx(p).tolist()
        [7, 2, 1]
    """
    path = check_path("path", path)
    raw = _read_bytes(path)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _DTYPES:
        raise DataError(
            f"{path} is not an IDX file: expected a header starting with two zero bytes and a "
            f"type code, found {raw[:4].hex(' ') or 'an empty file'}; re-download the file"
        )
    dtype, itemsize = _DTYPES[raw[2]]
    ndim = raw[3]
    if ndim > _MAX_DIMS:
        raise DataError(
            f"{path} announces {ndim} dimensions in its IDX header, more than the {_MAX_DIMS} "
            "an array can have: the file is damaged or not IDX; re-download it"
        )
    header_end = 4 + 4 * ndim
    if len(raw) < header_end:
        raise DataError(f"{path} is truncated inside its IDX header ({len(raw)} bytes)")
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = header_end + itemsize * math.prod(shape)  # Python ints: no overflow
    if len(raw) != expected:
        problem = "truncated" if len(raw) < expected else "longer than its header says"
        raise DataError(
            f"{path} is {problem}: its header announces shape {shape} "
            f"({expected} bytes with the header), found {len(raw)} bytes; re-download the file"
        )
    array = np.frombuffer(raw, dtype=dtype, offset=header_end).reshape(shape)
    if itemsize > 1:  # single bytes need no swapping: use the buffer, not a second copy
        array = array.astype(array.dtype.newbyteorder("="), copy=True)
    return torch.from_numpy(array)


def _read_bytes(path: Path) -> bytearray:
    """The file's (decompressed) bytes in a writable buffer that tensors can share."""
    try:
        with path.open("rb") as handle:
            raw = bytearray(os.fstat(handle.fileno()).st_size)
            del raw[handle.readinto(raw) :]
    except FileNotFoundError:
        raise DataError(f"IDX file not found: {path}") from None
    except OSError as error:
        raise DataError(f"cannot read IDX file {path}: {error}") from error
    if raw[:2] != _GZIP_MAGIC:
        return raw
    try:
        return bytearray(gzip.decompress(raw))
    except (OSError, EOFError) as error:
        raise DataError(
            f"{path} is a damaged gzip file ({error}); delete it and download it again"
        ) from error
