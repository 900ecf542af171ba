"""Extracting data set archives safely: every member is checked before anything is written.

A tar archive can hold members named ``../x`` or ``/etc/x``, symbolic and hard links that
point anywhere, device files and FIFOs, or declare sizes that would fill the disk (a "tar
bomb"). `extract_tar` reads the whole member list first and refuses the archive if
any member is one of those, so a refused archive writes nothing. It then extracts into a
hidden temporary folder inside the target (with Python's ``data`` extraction filter as a
second line of defence) and renames the result into place: an interrupted extraction leaves
no half-extracted folder that looks complete.
"""

from __future__ import annotations

import errno
import os
import shutil
import tarfile
import tempfile
import zlib
from pathlib import Path, PurePosixPath, PureWindowsPath

from visionkit.exceptions import DataError

__all__ = ["MAX_EXTRACTED_BYTES", "MAX_MEMBERS", "extract_tar"]

MAX_EXTRACTED_BYTES = 1 << 30
"""Default limit of the total size an archive may extract to: 1 GiB (CIFAR-10: 178 MiB)."""
MAX_MEMBERS = 100_000
"""Default limit of the number of files and folders in an archive (CIFAR-10 has 9)."""

# What a damaged compressed stream raises: gzip's BadGzipFile is an OSError, zlib.error
# and EOFError come from a stream cut short, lzma/bz2 raise OSError or their own errors.
_READ_ERRORS: tuple[type[BaseException], ...] = (tarfile.TarError, EOFError, zlib.error, OSError)
try:
    import lzma

    _READ_ERRORS += (lzma.LZMAError,)
except ImportError:  # pragma: no cover - Python built without lzma
    pass


def extract_tar(
    archive: str | os.PathLike[str],
    into: str | os.PathLike[str],
    *,
    max_bytes: int = MAX_EXTRACTED_BYTES,
    max_members: int = MAX_MEMBERS,
) -> list[Path]:
    """Extract a tar archive (plain, ``.gz``, ``.bz2`` or ``.xz``) into the folder ``into``.

    Every member is checked before anything is written. The archive is refused if a member
    has an absolute name (``/x``, ``C:\\x``), a ``..`` component, a backslash, or a
    name that resolves outside ``into``; if it is a symbolic link, a hard link, a device
    file or a FIFO; if the members add up to more than ``max_bytes`` (the sizes declared in
    the headers, which is what extraction would write) or number more than ``max_members``;
    or if a top-level entry of the archive already exists in ``into``. The members are then
    extracted into a hidden temporary folder inside ``into``, with Python's ``data``
    extraction filter as a second check, and each top-level entry is renamed into place.

    Args:
        archive: The tar file.
        into: The folder to extract into (created if missing).
        max_bytes: Refuse archives that would extract to more bytes than this.
        max_members: Refuse archives with more members than this.

    Returns:
        The top-level files and folders extracted, in ``into``.

    Raises:
        DataError: naming the archive, and the offending member and why, if the archive is
            refused, truncated or corrupt, or extraction fails (disk full, ...); nothing is
            left in ``into`` then.
    """
    archive, into = Path(archive), Path(into)
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = tar.getmembers()  # reads (and decompresses) the whole archive
            tops = _check_members(archive, into, members, max_bytes, max_members)
            into.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix=f".{archive.name}.extracting-", dir=into))
            try:
                _extract(tar, members, staging)
                for name in tops:
                    os.replace(staging / name, into / name)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
    except DataError:
        raise
    except _FILTER_ERRORS as error:  # the checks above refuse these first
        raise _refused(archive, str(error)) from error
    except _READ_ERRORS as error:
        if isinstance(error, FileNotFoundError) and not archive.exists():
            raise DataError(f"archive {archive} not found") from None
        raise _failed(archive, into, error) from error
    return [into / name for name in tops]


def _check_members(
    archive: Path, into: Path, members: list[tarfile.TarInfo], max_bytes: int, max_members: int
) -> list[str]:
    """Refuse the archive if any member is unsafe; return its top-level names."""
    if not members:
        raise DataError(f"{archive} is an empty tar archive: nothing to extract")
    if len(members) > max_members:
        raise _refused(
            archive,
            f"it holds {len(members)} members, more than the limit of {max_members} (max_members)",
        )
    target = into.resolve()
    total = 0
    tops: list[str] = []
    for member in members:
        why = _unsafe(member, target)
        if why:
            raise _refused(archive, f"member {member.name!r} {why}")
        total += member.size if member.isfile() else 0
        parts = PurePosixPath(member.name).parts
        if parts and parts[0] not in tops:
            tops.append(parts[0])
    if total > max_bytes:
        raise _refused(
            archive,
            f"its members would extract to {_size(total)}, more than the limit of "
            f"{_size(max_bytes)} (max_bytes): a damaged archive or a tar bomb",
        )
    existing = [top for top in tops if os.path.lexists(into / top)]
    if existing:
        raise DataError(
            f"refused to extract {archive}: it would replace {into / existing[0]}, which "
            "already exists (left by an earlier, maybe interrupted, extraction?). Nothing was "
            "extracted: delete or move it, then try again"
        )
    return tops


def _unsafe(member: tarfile.TarInfo, target: Path) -> str | None:
    """Why ``member`` cannot be extracted safely into ``target``, or ``None``."""
    name = member.name
    if not name:
        return "has an empty name"
    if name.startswith("/") or PureWindowsPath(name).drive or PureWindowsPath(name).root:
        return "has an absolute path"
    if "\\" in name:
        return "has a backslash in its name, a folder separator on Windows"
    parts = PurePosixPath(name).parts
    if ".." in parts:
        return "has a '..' component, which would write outside the target folder"
    resolved = Path(target, *parts).resolve()
    if resolved != target and target not in resolved.parents:
        return f"resolves to {resolved}, outside the target folder"
    if member.issym():
        return f"is a symbolic link (to {member.linkname!r})"
    if member.islnk():
        return f"is a hard link (to {member.linkname!r})"
    if member.isdev():  # character and block devices, FIFOs
        return "is a device file or a FIFO"
    if not (member.isfile() or member.isdir()):
        return f"has the unsupported tar type {member.type!r}"
    return None


def _extract(tar: tarfile.TarFile, members: list[tarfile.TarInfo], into: Path) -> None:
    if hasattr(tarfile, "data_filter"):  # Python 3.10.12+, 3.11.4+
        tar.extractall(into, members=members, filter="data")
        return
    for member in members:  # pragma: no cover - older Pythons: what the data filter does
        member.mode = (member.mode | 0o600) & 0o755 if member.isfile() else 0o755
        owner = getattr(os, "getuid", lambda: 0)(), getattr(os, "getgid", lambda: 0)()
        member.uid, member.gid, member.uname, member.gname = *owner, "", ""
    tar.extractall(into, members=members)  # pragma: no cover


_FILTER_ERRORS: tuple[type[BaseException], ...] = tuple(
    error for error in [getattr(tarfile, "FilterError", None)] if error is not None
)
_WRITE_ERRNOS = frozenset(
    getattr(errno, name)
    for name in ("ENOSPC", "EDQUOT", "EFBIG", "EACCES", "EPERM", "EROFS")
    if hasattr(errno, name)
)


def _refused(archive: Path, why: str) -> DataError:
    return DataError(
        f"refused to extract {archive}: {why}. Nothing was extracted; the archive is damaged "
        "or was crafted to write outside its folder: get a clean copy from the data set's "
        "official source"
    )


def _failed(archive: Path, into: Path, error: BaseException) -> DataError:
    detail = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
    if isinstance(error, OSError) and error.filename in (str(archive), archive):
        return DataError(f"cannot read archive {archive} ({detail}): check that it is readable")
    if isinstance(error, OSError) and error.errno in _WRITE_ERRNOS:
        return DataError(
            f"could not extract {archive} into {into} ({detail}); nothing was extracted: "
            "check that the folder is writable and the disk has space"
        )
    return DataError(
        f"{archive} is truncated or corrupt, or not a tar archive ({detail}); nothing was "
        "extracted: delete it and download it again"
    )


def _size(n: int) -> str:
    if n < 1024:
        return f"{n} bytes"
    power = min(4, (n.bit_length() - 1) // 10)
    return f"{n / 1024**power:.1f} {('KiB', 'MiB', 'GiB', 'TiB')[power - 1]}"
