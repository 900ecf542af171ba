"""Reader for the IDX format of MNIST and Fashion-MNIST, gzipped or not."""

from __future__ import annotations

import contextlib
import gzip
import io
import math
import os
import zlib
from collections.abc import Iterator
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
_MAX_INFLATION = 1032  # deflate's largest ratio: a .gz of n bytes holds at most ~1032 n
_CHUNK = 1 << 24  # bytes read per call, so a stream is never copied whole


def read_idx(path: str | os.PathLike[str]) -> torch.Tensor:
    """Read an IDX file (``.gz`` or plain, detected from its bytes) into a tensor.

    The header is two zero bytes, a type code, the number of dimensions, then each
    dimension as a big-endian ``uint32``; the data follow, big-endian.

    A gzipped file is decompressed as a stream: the header is read first, and then at most
    the number of bytes it announces (plus one, to detect trailing data), so a small file
    that inflates to gigabytes (a gzip bomb) is refused without being decompressed.

    Raises:
        DataError: if the file is missing, is not IDX, announces more than 32 dimensions,
            or is shorter or longer than its header says; the message names the file.

    Examples:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "labels-idx1-ubyte"
        >>> _ = p.write_bytes(bytes([0, 0, 8, 1, 0, 0, 0, 3, 7, 2, 1]))
        >>> read_idx(p).tolist()
        [7, 2, 1]
    """
    path = check_path("path", path)
    try:
        with _open(path) as (stream, packed, compressed_size):
            return _read_stream(path, stream, packed, compressed_size)
    except FileNotFoundError:
        raise DataError(f"IDX file not found: {path}") from None
    except (EOFError, zlib.error, gzip.BadGzipFile) as error:
        raise DataError(
            f"{path} is a damaged gzip file ({error}); delete it and download it again"
        ) from error
    except OSError as error:
        raise DataError(f"cannot read IDX file {path}: {error}") from error


@contextlib.contextmanager
def _open(path: Path) -> Iterator[tuple[io.BufferedIOBase, bool, int]]:
    """``(stream of the IDX bytes, whether gzipped, size of the file on disk)``."""
    with path.open("rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        packed = handle.read(2) == _GZIP_MAGIC
        handle.seek(0)
        if not packed:
            yield handle, False, size
            return
        with gzip.GzipFile(fileobj=handle, mode="rb") as unpacked:
            yield unpacked, True, size


def _read_stream(
    path: Path, stream: io.BufferedIOBase, packed: bool, file_size: int
) -> torch.Tensor:
    start = _read_up_to(stream, 4)
    if len(start) < 4 or start[0] != 0 or start[1] != 0 or start[2] not in _DTYPES:
        raise DataError(
            f"{path} is not an IDX file: expected a header starting with two zero bytes and a "
            f"type code, found {bytes(start).hex(' ') or 'an empty file'}; re-download the file"
        )
    dtype, itemsize = _DTYPES[start[2]]
    ndim = start[3]
    if ndim > _MAX_DIMS:
        raise DataError(
            f"{path} announces {ndim} dimensions in its IDX header, more than the {_MAX_DIMS} "
            "an array can have: the file is damaged or not IDX; re-download it"
        )
    header_end = 4 + 4 * ndim
    dims = _read_up_to(stream, 4 * ndim)
    if len(dims) < 4 * ndim:
        raise DataError(f"{path} is truncated inside its IDX header ({4 + len(dims)} bytes)")
    shape = tuple(int.from_bytes(dims[4 * i : 4 * i + 4], "big") for i in range(ndim))
    data_size = itemsize * math.prod(shape)  # Python ints: no overflow
    expected = header_end + data_size

    def wrong_size(found: str, problem: str) -> DataError:
        return DataError(
            f"{path} is {problem}: its header announces shape {shape} "
            f"({expected} bytes with the header), found {found} bytes; re-download the file"
        )

    # Refuse before allocating when the file cannot hold what the header announces:
    # a plain file must have exactly that size; deflate inflates at most ~1032-fold.
    if not packed and file_size != expected:
        problem = "truncated" if file_size < expected else "longer than its header says"
        raise wrong_size(str(file_size), problem)
    most = _MAX_INFLATION * file_size + (1 << 16)
    if packed and data_size > most:
        raise DataError(
            f"{path} is truncated or damaged: its header announces shape {shape} "
            f"({expected} bytes with the header), but a gzip file of {file_size} bytes "
            f"inflates to at most about {most} bytes; re-download the file"
        )
    buffer = np.empty(data_size + 1, dtype=np.uint8)  # pages are only used once written
    filled = _read_into(stream, buffer.data)
    if filled != data_size:
        if filled < data_size:
            raise wrong_size(str(header_end + filled), "truncated")
        raise wrong_size(f"more than {expected}", "longer than its header says")
    array = buffer[:data_size].view(dtype).reshape(shape)
    if itemsize > 1:  # single bytes need no swapping: use the buffer, not a second copy
        array = array.astype(array.dtype.newbyteorder("="), copy=True)
    return torch.from_numpy(array)


def _read_up_to(stream: io.BufferedIOBase, size: int) -> bytearray:
    """Up to ``size`` bytes: fewer only at the end of the stream."""
    data = bytearray(size)
    return data[: _read_into(stream, memoryview(data))]


def _read_into(stream: io.BufferedIOBase, target: memoryview) -> int:
    """Fill ``target`` from ``stream`` (which may return short reads); bytes read."""
    filled = 0
    while filled < len(target):
        count = stream.readinto(target[filled : filled + _CHUNK])
        if not count:
            break
        filled += count
    return filled
