"""Hostile files: malicious checkpoints, archives and images are refused and do no harm.

Three catalogues; each case is checked, then counted with ``count`` (see ``conftest.py``):

* ``hostile_checkpoints``: checkpoints crafted to run code when unpickled (``os.system``,
  ``eval``, ``exec``, ``subprocess``, ``__import__``, the INST / OBJ / STACK_GLOBAL opcodes,
  REDUCE on ``functools.partial``, BUILD ``__setstate__`` hijacks, torch's own rebuild and
  load helpers, ...) in every container ``torch.load`` reads (zip, legacy pickle stream,
  legacy tar). Each is refused with a ``CheckpointError`` by ``load_checkpoint``,
  ``Predictor.from_checkpoint`` and ``Trainer.fit(resume_from=...)``, and its sentinel
  file is never created. A control load with ``torch.load(weights_only=False)`` proves
  every payload is live: that one does create its sentinel.
* ``hostile_archives``: tar archives with ``..`` or absolute names, symbolic and hard
  links, device files and FIFOs, bombs, or damage, given to ``extract_tar`` and to
  ``cifar10(root)``: each is refused with a ``DataError`` naming the member, and nothing
  is written, neither outside the target folder nor inside it.
* ``hostile_images``: decompression bombs (refused from their header, never decoded),
  truncated, empty and fake images: each is refused with a ``DataError`` naming the file
  by ``image_folder``, ``ImageFolderDataset`` (decoding lazily) and ``Predictor.predict``.
"""

from __future__ import annotations

import contextlib
import errno
import gzip
import io
import marshal
import os
import pickle
import re
import resource
import shlex
import shutil
import stat
import struct
import sys
import tarfile
import tracemalloc
import warnings
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image, ImageFile

import visionkit
from visionkit import CheckpointError, DataError, Predictor, Trainer
from visionkit.data import (
    CIFAR10_CLASSES,
    ImageFolderDataset,
    TensorImageDataset,
    _archives,
    cifar10,
    read_idx,
)
from visionkit.data._archives import extract_tar
from visionkit.models import create_model
from visionkit.predict import Preprocess, load_checkpoint, make_checkpoint, save_checkpoint

Count = Callable[..., None]
SRC = Path(visionkit.__file__).resolve().parent


def _snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Every path under ``folder`` (links not followed) with its size and type."""
    found = {}
    for top, dirs, files in os.walk(folder):
        for name in dirs + files:
            path = Path(top, name)
            info = path.lstat()
            found[str(path.relative_to(folder))] = (info.st_size, stat.S_IFMT(info.st_mode))
    return found


# =============================================================== malicious checkpoints


def _text(value: str) -> bytes:
    """A BINUNICODE string (protocol 1+, what ``torch.save``'s protocol 2 uses)."""
    data = value.encode()
    return pickle.BINUNICODE + struct.pack("<I", len(data)) + data


def _bytes(value: bytes) -> bytes:
    return pickle.BINBYTES + struct.pack("<I", len(value)) + value


def _global(module: str, name: str) -> bytes:
    return pickle.GLOBAL + f"{module}\n{name}\n".encode()


def _call(func: bytes, *args: bytes) -> bytes:
    """``func(*args)``: push the callable, a MARK, the arguments, TUPLE, then REDUCE."""
    return func + pickle.MARK + b"".join(args) + pickle.TUPLE + pickle.REDUCE


_P2 = pickle.PROTO + b"\x02"


def _shell(sentinel: Path) -> str:
    return f"touch {shlex.quote(str(sentinel))}"


def _python(sentinel: Path) -> str:
    return f"open({str(sentinel)!r}, 'w').close()"


class _Reduces:
    """Pickles as ``func(*args)``: the usual way to write a malicious pickle."""

    def __init__(self, func: Callable[..., Any], *args: Any) -> None:
        self.func, self.args = func, args

    def __reduce__(self) -> tuple[Any, ...]:
        return (self.func, self.args)


def _real_checkpoint() -> dict[str, Any]:
    torch.manual_seed(0)
    model = create_model("mlp", in_features=4, hidden=[3], num_classes=2)
    return make_checkpoint(model, classes=["a", "b"], metrics={"val_loss": 0.5})


# Raw pickles, written opcode by opcode. Each runs its command when unpickled.
RAW: dict[str, Callable[[Path], bytes]] = {
    # Protocol 0, text only, no PROTO header: the oldest form of the classic exploit.
    "protocol-0-text-os.system": lambda s: b"cos\nsystem\n(V" + _shell(s).encode() + b"\ntR.",
    "GLOBAL-os.system": lambda s: _P2 + _call(_global("os", "system"), _text(_shell(s))) + b".",
    # Protocol 4's STACK_GLOBAL takes module and name from the stack.
    "STACK_GLOBAL-posix.system": lambda s: (
        pickle.PROTO
        + b"\x04"
        + _text("posix")
        + _text("system")
        + pickle.STACK_GLOBAL
        + _text(_shell(s))
        + pickle.TUPLE1
        + pickle.REDUCE
        + pickle.STOP
    ),
    "builtins.eval": lambda s: _P2 + _call(_global("builtins", "eval"), _text(_python(s))) + b".",
    "builtins.exec": lambda s: _P2 + _call(_global("builtins", "exec"), _text(_python(s))) + b".",
    # Python 2 names are mapped to Python 3 ones by the unpickler (fix_imports).
    "python2-name-__builtin__.eval": lambda s: (
        _P2 + _call(_global("__builtin__", "eval"), _text(_python(s))) + b"."
    ),
    "subprocess.run": lambda s: (
        _P2
        + _call(
            _global("subprocess", "run"),
            pickle.MARK + _text("touch") + _text(str(s)) + pickle.LIST,
        )
        + b"."
    ),
    # getattr(__import__("os"), "system")(command)
    "__import__-getattr-chain": lambda s: (
        _P2
        + _call(
            _call(
                _global("builtins", "getattr"),
                _call(_global("builtins", "__import__"), _text("os")),
                _text("system"),
            ),
            _text(_shell(s)),
        )
        + b"."
    ),
    # A protocol 4 dotted name reaches os through a module the safe loader trusts.
    "dotted-name-torch.serialization.os.system": lambda s: (
        pickle.PROTO
        + b"\x04"
        + _call(_global("torch.serialization", "os.system"), _text(_shell(s)))
        + b"."
    ),
    # INST names the callable inline: no GLOBAL opcode for a filter to see.
    "INST-opcode": lambda s: (
        _P2 + pickle.MARK + _text(_shell(s)) + pickle.INST + b"os\nsystem\n" + pickle.STOP
    ),
    "OBJ-opcode": lambda s: (
        _P2 + pickle.MARK + _global("os", "system") + _text(_shell(s)) + pickle.OBJ + b"."
    ),
    # functools.partial(os.system, command)()
    "REDUCE-functools.partial": lambda s: (
        _P2
        + _call(_global("functools", "partial"), _global("os", "system"), _text(_shell(s)))
        # call the partial object with no arguments
        + pickle.EMPTY_TUPLE
        + pickle.REDUCE
        + b"."
    ),
    # operator.methodcaller("system", command)(importlib.import_module("os"))
    "REDUCE-operator.methodcaller": lambda s: (
        _P2
        + _call(
            _call(_global("operator", "methodcaller"), _text("system"), _text(_shell(s))),
            _call(_global("importlib", "import_module"), _text("os")),
        )
        + b"."
    ),
    # BUILD puts os.system in the instance dict of a Counter (a class the safe loader
    # builds) as __setstate__; the second BUILD then calls it with the command.
    "BUILD-__setstate__-hijack": lambda s: (
        _P2
        + _global("collections", "Counter")
        + pickle.EMPTY_TUPLE
        + pickle.REDUCE
        + pickle.EMPTY_DICT
        + _text("__setstate__")
        + _global("os", "system")
        + pickle.SETITEM
        + pickle.BUILD
        + _text(_shell(s))
        + pickle.BUILD
        + b"."
    ),
    # types.FunctionType(marshal.loads(code), {})(): arbitrary bytecode.
    "marshal-code-FunctionType": lambda s: (
        _P2
        + _call(
            _global("types", "FunctionType"),
            _call(_global("marshal", "loads"), _bytes(_marshal(_python(s)))),
            pickle.EMPTY_DICT,
        )
        + pickle.EMPTY_TUPLE
        + pickle.REDUCE
        + b"."
    ),
    # An unrestricted unpickler inside the restricted one.
    "nested-pickle.loads": lambda s: (
        _P2 + _call(_global("pickle", "loads"), _bytes(RAW["GLOBAL-os.system"](s))) + b"."
    ),
    "numpy-runstring-exec": lambda s: (
        _P2
        + _call(
            _global("numpy.testing._private.utils", "runstring"),
            _text(_python(s)),
            pickle.EMPTY_DICT,
        )
        + b"."
    ),
    # torch's own helper that calls torch.load(weights_only=False) on bytes.
    "torch.storage._load_from_bytes": lambda s: (
        _P2
        + _call(_global("torch.storage", "_load_from_bytes"), _bytes(RAW["GLOBAL-os.system"](s)))
        + b"."
    ),
    # A rebuild function the safe loader allows, asked to call os.system.
    "torch._tensor._rebuild_from_type_v2": lambda s: (
        _P2
        + _call(
            _global("torch._tensor", "_rebuild_from_type_v2"),
            _global("os", "system"),
            _global("torch", "Tensor"),
            _text(_shell(s)) + pickle.TUPLE1,
            pickle.EMPTY_DICT,
        )
        + b"."
    ),
}


def _marshal(source: str) -> bytes:
    return marshal.dumps(compile(source, "<payload>", "exec"))


def _raw_file(name: str) -> Callable[[Path, Path], Path]:
    def write(folder: Path, sentinel: Path) -> Path:
        path = folder / "evil.ckpt"
        path.write_bytes(RAW[name](sentinel))
        return path

    return write


def _zip_with_swapped_data_pkl(folder: Path, sentinel: Path) -> Path:
    """A real checkpoint written by torch.save whose data.pkl is replaced by a payload."""
    path = save_checkpoint(_real_checkpoint(), folder / "swapped.ckpt")
    with zipfile.ZipFile(path) as archive:
        members = {info.filename: archive.read(info) for info in archive.infolist()}
    data_pkl = next(name for name in members if name.endswith("/data.pkl"))
    evil = {
        "format": "visionkit-checkpoint",
        "format_version": 1,
        "model": {},
        "state_dict": {},
        "classes": _Reduces(os.system, _shell(sentinel)),
    }
    members[data_pkl] = pickle.dumps(evil, protocol=2)
    path.unlink()
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def _nested_in_real_checkpoint(folder: Path, sentinel: Path) -> Path:
    """A real checkpoint with the payload three levels deep in its metrics."""
    checkpoint = _real_checkpoint()
    note = _Reduces(os.system, _shell(sentinel))
    checkpoint["metrics"]["history"] = [{"epoch": 1, "notes": [note]}]
    path = folder / "nested.ckpt"
    torch.save(checkpoint, path)  # save_checkpoint would refuse the object
    return path


def _legacy_torch_save(folder: Path, sentinel: Path) -> Path:
    """The pre-1.6 format: a stream of pickles (magic number, version, sys_info, data)."""
    checkpoint = _real_checkpoint()
    checkpoint["classes"] = _Reduces(os.system, _shell(sentinel))
    path = folder / "legacy.ckpt"
    torch.save(checkpoint, path, _use_new_zipfile_serialization=False)
    return path


def _legacy_payload_in_sys_info(folder: Path, sentinel: Path) -> Path:
    """A valid legacy magic number and version, then the payload as the sys_info pickle."""
    magic = pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2)
    version = pickle.dumps(1001, protocol=2)
    path = folder / "legacy-sys-info.ckpt"
    payload = pickle.dumps(_Reduces(os.system, _shell(sentinel)), protocol=2)
    path.write_bytes(magic + version + payload)
    return path


def _legacy_tar(first_member: str | None) -> Callable[[Path, Path], Path]:
    """The oldest torch.save format: a tar of pickles, the payload in ``storages``.

    With ``first_member`` starting with byte 0x80 the file starts like a pickle, so a
    check of the first bytes alone would let it through to torch.load.
    """

    def write(folder: Path, sentinel: Path) -> Path:
        path = folder / "legacy-tar.ckpt"
        members = [
            ("sys_info", pickle.dumps({"protocol_version": 1001}, protocol=2)),
            ("storages", pickle.dumps(_Reduces(os.system, _shell(sentinel)), protocol=2)),
            ("tensors", pickle.dumps(0, protocol=2)),
            ("pickle", pickle.dumps({}, protocol=2)),
        ]
        if first_member is not None:
            members.insert(0, (first_member, b""))
        with tarfile.open(path, "w", format=tarfile.GNU_FORMAT, encoding="latin-1") as tar:
            for name, data in members:
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        return path

    return write


@dataclass(frozen=True)
class Payload:
    """A malicious checkpoint: how to write it and what the refusal must say."""

    id: str
    write: Callable[[Path, Path], Path]  # (folder, sentinel) -> the checkpoint file
    expect: str  # a regular expression the CheckpointError's message must match


_REFUSED_CODE = r"refused to load .*could run code .*references "
_REFERENCES = {
    "GLOBAL-os.system": "os.system",
    "builtins.eval": "eval",
    "builtins.exec": "exec",
    "python2-name-__builtin__.eval": "eval",
    "subprocess.run": r"subprocess\.run",
    "__import__-getattr-chain": "getattr",
    "dotted-name-torch.serialization.os.system": r"torch\.serialization\.os\.system",
    "OBJ-opcode": r"os\.system",
    "REDUCE-functools.partial": r"functools\.partial",
    "REDUCE-operator.methodcaller": r"operator\.methodcaller",
    "BUILD-__setstate__-hijack": r"os\.system",
    "marshal-code-FunctionType": r"types\.FunctionType",
    "nested-pickle.loads": r"pickle\.loads",
    "numpy-runstring-exec": r"numpy\.testing\._private\.utils\.runstring",
    "torch.storage._load_from_bytes": r"torch\.storage\._load_from_bytes",
    "torch._tensor._rebuild_from_type_v2": r"os\.system",
}
_NOT_A_CHECKPOINT = r"is not a PyTorch checkpoint file \(it starts with bytes"
_SYSTEM = r"(posix|nt|os)\.system"
_TAR = r"refused to load .*it is a tar archive.*cannot be read without letting them run code"
PAYLOADS = [
    *(Payload(name, _raw_file(name), _REFUSED_CODE + ref) for name, ref in _REFERENCES.items()),
    Payload("protocol-0-text-os.system", _raw_file("protocol-0-text-os.system"), _NOT_A_CHECKPOINT),
    Payload(
        "STACK_GLOBAL-posix.system",
        _raw_file("STACK_GLOBAL-posix.system"),
        r"refused to load .*pickle instruction STACK_GLOBAL \(byte 0x93\).*crafted to run code",
    ),
    Payload(
        "INST-opcode",
        _raw_file("INST-opcode"),
        r"refused to load .*pickle instruction INST \(byte 0x69\).*crafted to run code",
    ),
    Payload(
        "zip-data.pkl-swapped-into-real-checkpoint",
        _zip_with_swapped_data_pkl,
        _REFUSED_CODE + _SYSTEM,
    ),
    Payload(
        "zip-payload-nested-in-real-checkpoint", _nested_in_real_checkpoint, _REFUSED_CODE + _SYSTEM
    ),
    Payload("legacy-pickle-stream-torch.save", _legacy_torch_save, _REFUSED_CODE + _SYSTEM),
    Payload(
        "legacy-pickle-stream-payload-in-sys_info",
        _legacy_payload_in_sys_info,
        _REFUSED_CODE + _SYSTEM,
    ),
    Payload("legacy-tar", _legacy_tar(None), _TAR),
    Payload(
        "legacy-tar-starting-with-byte-0x80",
        _legacy_tar("\x80pad"),
        _TAR,
    ),
]


def _via_load_checkpoint(path: Path) -> None:
    load_checkpoint(path)


def _via_predictor(path: Path) -> None:
    Predictor.from_checkpoint(path, device="cpu")


def _via_resume(path: Path) -> None:
    torch.manual_seed(0)
    model = create_model("mlp", in_features=784, hidden=[4], num_classes=10)
    digits = TensorImageDataset(
        torch.zeros(16, 1, 28, 28, dtype=torch.uint8),
        torch.arange(16) % 10,
        [str(i) for i in range(10)],
    )
    trainer = Trainer(
        model,
        max_steps=1,
        device="cpu",
        enable_checkpointing=False,
        enable_progress_bar=False,
        default_root_dir=path.parent.parent / "runs",
    )
    trainer.fit(digits, batch_size=8, resume_from=path)


ENTRIES: dict[str, Callable[[Path], None]] = {
    "load_checkpoint": _via_load_checkpoint,
    "Predictor.from_checkpoint": _via_predictor,
    "Trainer.fit(resume_from)": _via_resume,
}


def test_the_catalogue_has_at_least_ten_distinct_payloads() -> None:
    assert len({payload.id for payload in PAYLOADS}) == len(PAYLOADS) >= 10
    assert set(RAW) <= {payload.id for payload in PAYLOADS}


@pytest.mark.parametrize("entry", list(ENTRIES))
@pytest.mark.parametrize("payload", PAYLOADS, ids=[payload.id for payload in PAYLOADS])
def test_malicious_checkpoint_is_refused_and_runs_nothing(
    payload: Payload, entry: str, tmp_path: Path, count: Count
) -> None:
    folder = tmp_path / "hostile"
    folder.mkdir()
    sentinel = tmp_path / "PWNED"
    path = payload.write(folder, sentinel)
    before = _snapshot(folder)

    with pytest.raises(CheckpointError, match=payload.expect) as info:
        ENTRIES[entry](path)

    assert str(path) in str(info.value)
    assert not sentinel.exists(), f"{payload.id} ran its payload through {entry}"
    assert _snapshot(folder) == before  # nothing written beside the file either
    if entry != "load_checkpoint":
        return
    # Control: the payload is live. Loading it the unsafe way does create the sentinel.
    control = tmp_path / "control"
    control.mkdir()
    live = payload.write(control, control / "SENTINEL")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with contextlib.suppress(Exception):  # what it returns is no checkpoint: it ran
            torch.load(live, weights_only=False)
    assert (control / "SENTINEL").exists(), f"{payload.id} is not a working payload"
    count("hostile_checkpoints")


def test_refusal_names_what_was_found_and_the_fix(tmp_path: Path) -> None:
    path = _raw_file("GLOBAL-os.system")(tmp_path, tmp_path / "PWNED")
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert "Only load checkpoints from sources you trust" in message
    assert "weights_only" not in message  # no hint to turn the protection off
    build_an_int = tmp_path / "build.ckpt"
    build_an_int.write_bytes(_P2 + pickle.BININT1 + b"\x05" + pickle.EMPTY_DICT + b"b.")
    with pytest.raises(CheckpointError, match=r"asks for operations .*\(Can only build Tensor"):
        load_checkpoint(build_an_int)
    garbage = tmp_path / "garbage.ckpt"
    garbage.write_bytes(b"\x80\x02" + bytes(range(256)))
    with pytest.raises(CheckpointError, match=r"a byte that is no pickle instruction \(byte 0x00"):
        load_checkpoint(garbage)


# ================================================================= hostile archives

BATCH_NAMES = [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch"]


def _cifar_images(n: int, offset: int) -> np.ndarray:
    base = np.arange(3072, dtype=np.int64) % 7
    return ((np.arange(n)[:, None] + offset + base) % 256).astype(np.uint8)


def _cifar_batch(n: int, offset: int) -> bytes:
    batch = {
        b"batch_label": b"written by a test",
        b"labels": [(offset + i) % 10 for i in range(n)],
        b"data": _cifar_images(n, offset),
        b"filenames": [f"{i}.png".encode() for i in range(n)],
    }
    return pickle.dumps(batch, protocol=2)


def _cifar_meta() -> bytes:
    meta = {b"num_cases_per_batch": 10, b"label_names": [n.encode() for n in CIFAR10_CLASSES]}
    return pickle.dumps(meta, protocol=2)


Member = tuple[tarfile.TarInfo, bytes]


def _file(name: str, data: bytes = b"owned\n") -> Member:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    return info, data


def _special(name: str, kind: bytes, target: str = "", device: tuple[int, int] = (0, 0)) -> Member:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    info.devmajor, info.devminor = device
    return info, b""


def _cifar_members(prefix: str = "cifar-10-batches-py") -> list[Member]:
    folder = tarfile.TarInfo(prefix)
    folder.type = tarfile.DIRTYPE
    folder.mode = 0o755
    members: list[Member] = [(folder, b"")]
    for i, name in enumerate(BATCH_NAMES):
        members.append(_file(f"{prefix}/{name}", _cifar_batch(10, 10 * i)))
    members.append(_file(f"{prefix}/batches.meta", _cifar_meta()))
    return members


def _write_tar(path: Path, members: list[Member], mode: str = "w:gz") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, mode, format=tarfile.GNU_FORMAT) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return path


def _sparse_bomb_header(name: str, declared: int) -> bytes:
    """An old-GNU sparse member of ``declared`` bytes that stores no data at all."""
    info = tarfile.TarInfo(name)
    info.type = tarfile.GNUTYPE_SPARSE
    header = bytearray(info.tobuf(format=tarfile.GNU_FORMAT))
    header[483:495] = b"%011o\0" % declared  # realsize: the size extraction would write
    header[148:156] = b" " * 8
    header[148:156] = b"%06o\0 " % sum(header)  # the header checksum
    return bytes(header)


@dataclass(frozen=True)
class Archive:
    """A hostile archive: how to write it, and what the refusal must say."""

    id: str
    write: Callable[[Path, Path], Path]  # (path, outside folder) -> the archive
    expect: str
    limits: dict[str, int] = field(default_factory=dict)  # max_bytes / max_members


def _members(*make: Callable[[Path], Member]) -> Callable[[Path, Path], Path]:
    def write(path: Path, outside: Path) -> Path:
        return _write_tar(path, [*_cifar_members()[:2], *(m(outside) for m in make)])

    return write


def _symlink_then_write_through(path: Path, outside: Path) -> Path:
    link = _special("cifar-10-batches-py/escape", tarfile.SYMTYPE, str(outside))
    return _write_tar(path, [*_cifar_members(), link, _file("cifar-10-batches-py/escape/evil")])


def _sparse_bomb(path: Path, outside: Path) -> Path:
    raw = _sparse_bomb_header("cifar-10-batches-py/data_batch_1", 4 << 30) + b"\0" * 1024
    path.write_bytes(_gzip(raw))
    return path


def _gzip(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)


def _zeros_bomb(path: Path, outside: Path) -> Path:
    return _write_tar(path, [_file("cifar-10-batches-py/data_batch_1", bytes(2 << 20))])


def _many_members(path: Path, outside: Path) -> Path:
    return _write_tar(path, [_file(f"cifar-10-batches-py/{i}") for i in range(50)])


def _truncated(path: Path, outside: Path) -> Path:
    data = _write_tar(path, _cifar_members()).read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def _header_lies_about_size(path: Path, outside: Path) -> Path:
    """An uncompressed tar whose member declares 10 MiB but holds 1 KiB."""
    info = tarfile.TarInfo("cifar-10-batches-py/data_batch_1")
    info.size = 10 << 20
    path.write_bytes(info.tobuf(format=tarfile.GNU_FORMAT) + bytes(1024))
    return path


def _not_an_archive(path: Path, outside: Path) -> Path:
    path.write_bytes(bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8)))
    return path


ARCHIVES = [
    Archive(
        "dotdot-member",
        _members(lambda o: _file("../evil")),
        r"member '\.\./evil' has a '\.\.' component",
    ),
    Archive(
        "nested-dotdot-member",
        _members(lambda o: _file("cifar-10-batches-py/../../evil")),
        r"member 'cifar-10-batches-py/\.\./\.\./evil' has a '\.\.' component",
    ),
    Archive(
        "absolute-path-member",
        _members(lambda o: _file(str(o / "abs_evil"))),
        r"member '/.*abs_evil' has an absolute path",
    ),
    Archive(
        "windows-drive-member",
        _members(lambda o: _file("C:/evil")),
        r"member 'C:/evil' has an absolute path",
    ),
    Archive(
        "backslash-dotdot-member",
        _members(lambda o: _file("..\\evil")),
        r"member '\.\.\\\\evil' has a backslash",
    ),
    Archive(
        "symlink-outside-then-write-through-it",
        _symlink_then_write_through,
        r"member 'cifar-10-batches-py/escape' is a symbolic link \(to '/",
    ),
    Archive(
        "symlink-to-etc",
        _members(lambda o: _special("cifar-10-batches-py/etc", tarfile.SYMTYPE, "/etc")),
        r"is a symbolic link \(to '/etc'\)",
    ),
    Archive(
        "hardlink-to-etc-passwd",
        _members(lambda o: _special("cifar-10-batches-py/pw", tarfile.LNKTYPE, "/etc/passwd")),
        r"member 'cifar-10-batches-py/pw' is a hard link \(to '/etc/passwd'\)",
    ),
    Archive(
        "fifo-member",
        _members(lambda o: _special("cifar-10-batches-py/pipe", tarfile.FIFOTYPE)),
        r"member 'cifar-10-batches-py/pipe' is a device file or a FIFO",
    ),
    Archive(
        "character-device-member",
        _members(lambda o: _special("cifar-10-batches-py/null", tarfile.CHRTYPE, "", (1, 3))),
        r"is a device file or a FIFO",
    ),
    Archive(
        "block-device-member",
        _members(lambda o: _special("cifar-10-batches-py/sda", tarfile.BLKTYPE, "", (8, 0))),
        r"is a device file or a FIFO",
    ),
    Archive(
        "sparse-member-declaring-4-GiB",
        _sparse_bomb,
        r"would extract to 4\.0 GiB, more than the limit of 1\.0 GiB \(max_bytes\).*tar bomb",
    ),
    Archive(
        "2-MiB-of-zeros-over-a-1-MiB-limit",
        _zeros_bomb,
        r"would extract to 2\.0 MiB, more than the limit of 1\.0 MiB",
        {"max_bytes": 1 << 20},
    ),
    Archive(
        "50-members-over-a-limit-of-20",
        _many_members,
        r"it holds 50 members, more than the limit of 20 \(max_members\)",
        {"max_members": 20},
    ),
    Archive("truncated-tar.gz", _truncated, r"is truncated or corrupt, or not a tar archive"),
    Archive(
        "header-declares-10-MiB-holds-1-KiB",
        _header_lies_about_size,
        r"is truncated or corrupt, or not a tar archive",
    ),
    Archive("random-bytes", _not_an_archive, r"is truncated or corrupt, or not a tar archive"),
]
ARCHIVE_CASES = [
    pytest.param(archive, entry, id=f"{archive.id}-{entry}")
    for archive in ARCHIVES
    for entry in ("extract_tar", "cifar10")
    if entry == "extract_tar" or not archive.limits
]


@pytest.fixture
def area(tmp_path: Path) -> Path:
    """``tmp_path/area``: the target folder ``area/target`` and its siblings."""
    area = tmp_path / "area"
    (area / "target").mkdir(parents=True)
    (area / "sibling").mkdir()
    (area / "sibling" / "keep.txt").write_text("untouched")
    return area


def test_the_archive_catalogue_is_complete() -> None:
    assert len({archive.id for archive in ARCHIVES}) == len(ARCHIVES) >= 10


@pytest.mark.parametrize(("archive", "entry"), ARCHIVE_CASES)
def test_hostile_archive_is_refused_and_writes_nothing(
    archive: Archive, entry: str, area: Path, tmp_path: Path, count: Count
) -> None:
    target = area / "target"
    if entry == "extract_tar":
        (tmp_path / "archives").mkdir()
        path = archive.write(tmp_path / "archives" / "hostile.tar.gz", area)
    else:
        path = archive.write(target / "cifar-10-python.tar.gz", area)
    before = _snapshot(tmp_path)

    def read() -> object:
        if entry == "extract_tar":
            return extract_tar(path, target, **archive.limits)
        return cifar10(target)

    with pytest.raises(DataError, match=archive.expect) as info:
        read()

    message = str(info.value)
    assert str(path) in message
    assert "nothing was extracted" in message.lower()
    assert _snapshot(tmp_path) == before  # nothing inside the target, nothing beside it
    assert not Path("/etc/evil").exists()
    if entry == "extract_tar":
        count("hostile_archives")


def test_a_planted_symlink_in_the_target_is_not_followed(area: Path, tmp_path: Path) -> None:
    """``root/cifar-10-batches-py`` is a link to another folder: extraction must refuse."""
    target = area / "target"
    (target / "cifar-10-batches-py").symlink_to(area / "sibling", target_is_directory=True)
    _write_tar(target / "cifar-10-python.tar.gz", _cifar_members())
    before = _snapshot(tmp_path)
    with pytest.raises(DataError, match=r"cifar-10-batches-py' resolves to .*sibling, outside"):
        cifar10(target)
    assert _snapshot(tmp_path) == before


def test_the_data_filter_is_a_second_line_of_defence(
    area: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With visionkit's own checks switched off, Python's ``data`` filter still refuses."""
    if not hasattr(tarfile, "data_filter"):
        pytest.skip("this Python has no tarfile extraction filters (3.10.12+, 3.11.4+)")
    monkeypatch.setattr(_archives, "_unsafe", lambda member, target: None)
    path = _symlink_then_write_through(tmp_path / "archives" / "x.tar.gz", area)
    before = _snapshot(tmp_path)
    with pytest.raises(DataError, match=r"refused to extract .*x\.tar\.gz"):
        extract_tar(path, area / "target")
    assert _snapshot(tmp_path) == before


def test_a_failed_extraction_leaves_nothing_half_done(
    area: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The disk fills up after two files were written: nothing is left, the error says why."""
    target = area / "target"
    archive = _write_tar(target / "cifar-10-python.tar.gz", _cifar_members())
    before = _snapshot(tmp_path)
    real_extract = tarfile.TarFile.extract

    def extract_until_full(self: tarfile.TarFile, member: Any, path: Any, **kw: Any) -> None:
        if len(list(Path(path).rglob("data_batch_*"))) >= 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_extract(self, member, path, **kw)

    monkeypatch.setattr(tarfile.TarFile, "extract", extract_until_full)
    monkeypatch.setattr(
        tarfile.TarFile,
        "extractall",
        lambda self, path, members, **kw: [self.extract(m, path, **kw) for m in members],
    )
    with pytest.raises(DataError, match=r"could not extract .*No space left.*disk has space"):
        cifar10(target)
    assert _snapshot(tmp_path) == before

    def interrupted(self: tarfile.TarFile, member: Any, path: Any, **kw: Any) -> None:
        if len(list(Path(path).rglob("data_batch_*"))) >= 2:
            raise KeyboardInterrupt
        real_extract(self, member, path, **kw)

    monkeypatch.setattr(tarfile.TarFile, "extract", interrupted)
    with pytest.raises(KeyboardInterrupt):
        extract_tar(archive, target)
    assert _snapshot(tmp_path) == before


def test_cifar10_extracts_an_offline_archive(area: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = area / "target"
    archive = _write_tar(target / "cifar-10-python.tar.gz", _cifar_members())
    data = cifar10(target, val_fraction=0.2, seed=0)

    assert {p.name for p in target.iterdir()} == {archive.name, "cifar-10-batches-py"}
    assert sorted(p.name for p in (target / "cifar-10-batches-py").iterdir()) == sorted(
        [*BATCH_NAMES, "batches.meta"]
    )
    assert (len(data.train), len(data.val or []), len(data.test or [])) == (40, 10, 10)
    assert data.classes == CIFAR10_CLASSES
    assert isinstance(data.test, TensorImageDataset)
    assert data.test.targets.tolist() == [(50 + i) % 10 for i in range(10)]
    expected = torch.from_numpy(_cifar_images(10, 50)).view(10, 3, 32, 32)
    assert torch.equal(data.test.images, expected)
    # The second call reads the extracted batches; it does not extract again.
    monkeypatch.setattr(visionkit.data.cifar, "extract_tar", None)
    assert len(cifar10(target).train) == 45


def test_cifar10_extracts_the_real_sample_batches(area: Path, cifar_batches_dir: Path) -> None:
    sample = (cifar_batches_dir / "sample_batch").read_bytes()
    members = [_file(f"cifar-10-batches-py/{name}", sample) for name in BATCH_NAMES]
    meta = (cifar_batches_dir / "batches.meta").read_bytes()
    members.append(_file("cifar-10-batches-py/batches.meta", meta))
    _write_tar(area / "target" / "cifar-10-python.tar.gz", members)

    data = cifar10(area / "target", val_fraction=0.0)

    assert isinstance(data.test, TensorImageDataset)
    assert (len(data.train), len(data.test)) == (1000, 200)
    assert data.test.targets[:10].tolist() == [6, 9, 9, 4, 1, 1, 2, 7, 8, 3]
    assert data.test.images[0, 0, 0, :6].tolist() == [59, 43, 50, 68, 98, 119]
    assert data.classes == CIFAR10_CLASSES


# ----------------------------------------------------------------- gzip bombs (IDX)
IDX_HEADER_10_DIGITS = bytes([0, 0, 8, 3, 0, 0, 0, 10, 0, 0, 0, 28, 0, 0, 0, 28])


def _gzip_bomb(path: Path, header: bytes, zeros: int) -> Path:
    """A valid gzip file of ``header`` and ``zeros`` zero bytes, made in about a second.

    Each 8 MiB of zeros ends with a full flush, which resets the compressor, so they all
    compress to the same bytes: compress once, write many times (about 1 MB per GiB).
    """
    chunk = bytes(8 << 20)
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)  # raw deflate: gzip framing below
    head = compressor.compress(header) + compressor.flush(zlib.Z_FULL_FLUSH)
    piece = compressor.compress(chunk) + compressor.flush(zlib.Z_FULL_FLUSH)
    crc = zlib.crc32(header)
    for _ in range(zeros // len(chunk)):
        crc = zlib.crc32(chunk, crc)
    with path.open("wb") as handle:
        handle.write(b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff" + head)
        for _ in range(zeros // len(chunk)):
            handle.write(piece)
        handle.write(compressor.flush())
        handle.write(struct.pack("<II", crc, (len(header) + zeros) & 0xFFFFFFFF))
    return path


@contextlib.contextmanager
def _peak_memory() -> Iterator[list[int]]:
    """The peak of traced allocations (NumPy's included) in the block, in bytes."""
    peak: list[int] = []
    tracemalloc.start()
    try:
        yield peak
    finally:
        peak.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()


def test_gzip_bomb_idx_is_refused_without_inflating_it(tmp_path: Path, count: Count) -> None:
    # 10 MNIST images announced, 2 GiB of zeros behind them, in a ~2 MB file.
    path = _gzip_bomb(tmp_path / "train-images-idx3-ubyte.gz", IDX_HEADER_10_DIGITS, 2 << 30)
    assert path.stat().st_size < 4 << 20
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with _peak_memory() as peak, pytest.raises(DataError, match="longer than its header") as info:
        read_idx(path)
    assert str(path) in str(info.value)
    assert "(10, 28, 28)" in str(info.value)
    assert peak[0] < 200 << 20, f"peak {peak[0] >> 20} MiB while refusing a gzip bomb"
    rss_growth_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before
    assert rss_growth_kib < 200 << 10
    count("hostile_archives")


def test_gzip_idx_announcing_more_than_it_can_hold_is_refused_before_allocating(
    tmp_path: Path, count: Count
) -> None:
    header = bytes([0, 0, 8, 3]) + struct.pack(">III", 2**31, 2**31, 2**31)  # 2**93 bytes
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(_gzip(header + bytes(4096)))
    with _peak_memory() as peak, pytest.raises(DataError, match="inflates to at most") as info:
        read_idx(path)
    assert str(path) in str(info.value)
    assert peak[0] < 10 << 20
    count("hostile_archives")


def test_real_gzipped_idx_files_still_load(tmp_path: Path) -> None:
    images = np.arange(10 * 28 * 28, dtype=np.uint32).astype(np.uint8).reshape(10, 28, 28)
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(_gzip(IDX_HEADER_10_DIGITS + images.tobytes()))
    assert np.array_equal(read_idx(path).numpy(), images)
    path.write_bytes(_gzip(IDX_HEADER_10_DIGITS + images.tobytes() + b"\0"))
    with pytest.raises(DataError, match="longer than its header"):
        read_idx(path)


# =================================================================== hostile images

PILLOW_DEFAULT_LIMIT = 89_478_485  # PIL.Image.MAX_IMAGE_PIXELS as Pillow ships it


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png(width: int, height: int, rows: Iterator[bytes] | None = None, depth: int = 1) -> bytes:
    """A valid grey PNG (1 bit per pixel by default), compressed row by row."""
    compressor = zlib.compressobj(9)
    if rows is None:
        row = bytes(1 + (width * depth + 7) // 8)  # filter byte, then black pixels
        rows = (row for _ in range(height))
    data = b"".join(compressor.compress(row) for row in rows) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, depth, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", data)
        + _chunk(b"IEND", b"")
    )


def _gif_screen(width: int, height: int) -> bytes:
    """A GIF whose logical screen is ``width x height``, holding one 1x1 image."""
    screen = struct.pack("<HHBBB", width, height, 0, 0, 0)
    frame = b"," + struct.pack("<HHHHB", 0, 0, 1, 1, 0) + b"\x02\x02\x44\x01\x00"
    return b"GIF89a" + screen + frame + b";"


def _bmp_header(width: int, height: int) -> bytes:
    """A 24-bit BMP header announcing ``width x height`` pixels, followed by 16 bytes."""
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, 16, 2835, 2835, 0, 0)
    return b"BM" + struct.pack("<IHHI", 54 + 16, 0, 0, 54) + info + bytes(16)


def _jpeg(size: tuple[int, int] = (96, 80)) -> bytes:
    buffer = io.BytesIO()
    Image.effect_noise(size, 60).convert("RGB").save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def _png_noise(size: tuple[int, int] = (96, 80)) -> bytes:
    buffer = io.BytesIO()
    Image.effect_noise(size, 60).save(buffer, "PNG")
    return buffer.getvalue()


def _jpeg_claiming(width: int, height: int) -> bytes:
    data = bytearray(_jpeg((32, 32)))
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def _png_text_bomb() -> bytes:
    """A 4x4 PNG with a zTXt chunk that inflates to 64 MiB (Pillow stops at 1 MiB)."""
    text = zlib.compress(bytes(64 << 20), 9)
    header = struct.pack(">IIBBBBB", 4, 4, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"zTXt", b"Comment\x00\x00" + text)
        + _chunk(b"IDAT", zlib.compress(bytes(5 * 4)))
        + _chunk(b"IEND", b"")
    )


def _png_lying_header() -> bytes:
    """IHDR says 800x800 grey pixels; the data hold 8 rows of 8."""
    header = struct.pack(">IIBBBBB", 800, 800, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(bytes(9 * 8)))
        + _chunk(b"IEND", b"")
    )


def _png_bad_crc() -> bytes:
    data = bytearray(_png_noise((8, 8)))
    data[29] ^= 0xFF  # the last byte of IHDR's checksum
    return bytes(data)


def _half(data: bytes) -> bytes:
    return data[: len(data) // 2]


@dataclass(frozen=True)
class HostileImage:
    id: str
    name: str  # Pillow reads the bytes: the extension only has to be an image's
    make: Callable[[], bytes] | None  # None: a special file made by the test
    expect: str
    bomb: bool = False


BOMB = r"is a (\d+x\d+|huge) image, over Pillow's decompression-bomb limit of 89478485 pixels"
CORRUPT = r"is a corrupt or truncated image"
UNREADABLE = r"is not an image Pillow can read"
IMAGES = [
    # Over the limit but under twice it: Pillow itself would only warn, then decode.
    HostileImage(
        "png-12000x12000-1-bit-17-KB",
        "bomb.png",
        lambda: _png(12000, 12000),
        BOMB.replace(r"(\d+x\d+|huge)", "12000x12000") + r".*at 144000000 pixels",
        bomb=True,
    ),
    HostileImage(
        "bmp-header-10000x10000", "bomb.bmp", lambda: _bmp_header(10000, 10000), BOMB, bomb=True
    ),
    # Over twice the limit: Pillow raises DecompressionBombError while opening.
    HostileImage(
        "png-20000x20000-1-bit-48-KB",
        "bomb2.png",
        lambda: _png(20000, 20000),
        BOMB + r".*at 400000000 pixels",
        bomb=True,
    ),
    HostileImage(
        "gif-screen-65535x65535", "gif-bomb.png", lambda: _gif_screen(65535, 65535), BOMB, bomb=True
    ),
    HostileImage(
        "jpeg-sof-65500x65500", "bomb.jpg", lambda: _jpeg_claiming(65500, 65500), BOMB, bomb=True
    ),
    HostileImage("png-ztxt-text-bomb-64-MiB", "text.png", _png_text_bomb, CORRUPT),
    HostileImage("jpeg-cut-in-half", "half.jpg", lambda: _half(_jpeg()), CORRUPT),
    HostileImage("jpeg-header-only", "head.jpg", lambda: _jpeg()[:600], CORRUPT),
    HostileImage("png-cut-in-half", "half.png", lambda: _half(_png_noise()), CORRUPT),
    HostileImage("png-header-lies-800x800", "lies.png", _png_lying_header, CORRUPT),
    HostileImage("png-bad-header-checksum", "crc.png", _png_bad_crc, UNREADABLE),
    HostileImage("zero-bytes-jpg", "empty.jpg", lambda: b"", r"empty \(0 bytes\)"),
    HostileImage("text-named-jpg", "notes.jpg", lambda: b"not a picture\n" * 10, UNREADABLE),
    HostileImage("fifo-named-jpg", "pipe.jpg", None, r"is not a regular file"),
    HostileImage("link-to-dev-zero-named-png", "zero.png", None, r"is not a regular file"),
]


def _make_special(image: HostileImage, path: Path) -> None:
    if image.id.startswith("fifo"):
        if not hasattr(os, "mkfifo"):
            pytest.skip("no FIFOs on this system")
        os.mkfifo(path)
    else:
        if not Path("/dev/zero").exists():
            pytest.skip("no /dev/zero on this system")
        path.symlink_to("/dev/zero")


@pytest.fixture(scope="module")
def image_predictor(tmp_path_factory: pytest.TempPathFactory) -> Predictor:
    torch.manual_seed(0)
    model = create_model("mlp", in_features=3 * 8 * 8, hidden=[4], num_classes=2)
    checkpoint = make_checkpoint(model, classes=["a", "b"], preprocess=Preprocess(size=(8, 8)))
    path = save_checkpoint(checkpoint, tmp_path_factory.mktemp("predictor") / "rgb.ckpt")
    return Predictor.from_checkpoint(path, device="cpu")


@pytest.fixture
def decoded(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The files Pillow decodes pixels of during the test."""
    seen: list[str] = []
    load = ImageFile.ImageFile.load

    def spy(self: ImageFile.ImageFile) -> Any:
        seen.append(str(getattr(self, "filename", "")))
        return load(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", spy)
    return seen


def _peak_rss_mib() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB, bytes on macOS
    return peak / (1 << 20 if sys.platform == "darwin" else 1 << 10)


def test_the_image_catalogue_is_complete() -> None:
    assert len({image.id for image in IMAGES}) == len(IMAGES) >= 10


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
@pytest.mark.parametrize("image", IMAGES, ids=[image.id for image in IMAGES])
def test_hostile_image_is_refused_with_a_clear_error(
    image: HostileImage,
    tmp_path: Path,
    image_predictor: Predictor,
    decoded: list[str],
    monkeypatch: pytest.MonkeyPatch,
    count: Count,
) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", PILLOW_DEFAULT_LIMIT)
    root = tmp_path / "images"
    for folder in ("a", "b"):
        (root / "train" / folder).mkdir(parents=True)
        Image.new("RGB", (8, 8), (40, 80, 120)).save(root / "train" / folder / "good.png")
    path = root / "train" / "a" / image.name
    if image.make is None:
        _make_special(image, path)
    else:
        path.write_bytes(image.make())
    rss_before = _peak_rss_mib()

    # 1. image_folder decodes every file up front and lists every bad one in one error.
    with pytest.raises(DataError, match=r"1 problem in image folder") as info:
        visionkit.data.image_folder(root, splits=("train", None, None))
    assert f"{path} " in str(info.value)
    assert _matches(image.expect, str(info.value))

    # 2. Without verify only headers are read up front (bombs, unreadable files and
    # special files are refused there); a damaged file fails when its sample is read.
    with pytest.raises(DataError) as info:
        _read_lazily(root / "train", path)
    assert str(path) in str(info.value)
    assert _matches(image.expect, str(info.value))

    # 3. The Predictor reads image paths itself.
    with pytest.raises(DataError) as info:
        image_predictor.predict(path)
    assert str(path) in str(info.value)
    assert _matches(image.expect, str(info.value))

    if image.bomb:  # refused from the header: the pixels were never decoded
        assert str(path) not in decoded
        assert _peak_rss_mib() - rss_before < 100
    assert not ImageFile.LOAD_TRUNCATED_IMAGES
    count("hostile_images")


def _read_lazily(split: Path, path: Path) -> None:
    dataset = ImageFolderDataset(split, verify=False)
    dataset[dataset.paths.index(path)]


def _matches(pattern: str, text: str) -> bool:
    return re.search(pattern, text) is not None


def test_real_flower_cut_in_half_is_refused(
    flowers_dir: Path, tmp_path: Path, image_predictor: Predictor, count: Count
) -> None:
    jpeg = (flowers_dir / "train" / "1" / "image_06734.jpg").read_bytes()
    path = tmp_path / "flower.jpg"
    path.write_bytes(jpeg[: len(jpeg) // 2])
    with pytest.raises(DataError, match=r"cannot read image .*flower\.jpg: it is a corrupt or"):
        image_predictor.predict(path)
    with pytest.raises(DataError, match=r"flower\.jpg is a corrupt or truncated image"):
        _folder_with(tmp_path, path)
    count("hostile_images")


def _folder_with(tmp_path: Path, image: Path) -> None:
    root = tmp_path / "flowers"
    (root / "train" / "x").mkdir(parents=True)
    shutil.copy(image, root / "train" / "x" / image.name)
    visionkit.data.image_folder(root, splits=("train", None, None))


def test_bomb_is_refused_even_when_warnings_are_errors(
    tmp_path: Path, image_predictor: Predictor, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pillow's DecompressionBombWarning raised as an error still gives the bomb message."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", PILLOW_DEFAULT_LIMIT)
    path = tmp_path / "bomb.png"
    path.write_bytes(_png(12000, 12000))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(DataError, match=r"bomb\.png is a huge image, .*at 144000000 pixels"):
            image_predictor.predict(path)


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_the_limit_is_pillows_and_can_be_raised_for_trusted_files(
    tmp_path: Path, image_predictor: Predictor, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10_000)
    at_limit, over = tmp_path / "at.png", tmp_path / "over.png"
    Image.new("RGB", (100, 100)).save(at_limit)
    Image.new("RGB", (101, 100)).save(over)
    assert len(image_predictor.predict([at_limit])) == 1
    with pytest.raises(DataError, match=r"over\.png is a 101x100 image.*MAX_IMAGE_PIXELS = 10100"):
        image_predictor.predict(over)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10_100)  # the fix the message gives
    assert len(image_predictor.predict([over])) == 1


def test_visionkit_never_allows_truncated_images() -> None:
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False
    for source in SRC.rglob("*.py"):
        assert "LOAD_TRUNCATED_IMAGES" not in source.read_text(encoding="utf-8"), source
