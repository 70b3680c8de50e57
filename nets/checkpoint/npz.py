"""An .npz archive read member by member: every header (name, shape, dtype) first, then only the data asked for.

numpy.load inflates a member as soon as it is indexed, so a 1 MiB member declaring 1 GiB costs 1 GiB before
its name or shape can be checked. Here the headers come first, from each member's stream, and the caller
checks them against what it expects before reading any data:

    with NpzMembers(path) as archive:          # CheckpointError, one line, for anything unreadable
        archive.members["fc1.weight"].shape    # from the .npy header only
        array = archive.read("fc1.weight")     # the data, CRC-checked, at most the declared bytes

A member that declares far more data than its compressed bytes could plausibly hold (a decompression bomb)
is refused before it is read, and so is a file whose members do so together (many members, each under the
bound); the zip directory's sizes say both before anything is inflated (`refuse_inflation`, which PyTorch's
zip files pass too). So is any member that is not an .npy array or that would need a pickle.
"""

from __future__ import annotations

import math
import zipfile
import zlib
from dataclasses import dataclass

import numpy
from numpy.lib import format as npy_format

from nets.errors import first_line

from nets.checkpoint.record import CheckpointError

__all__ = ["BOMB_RATIO", "BOMB_THRESHOLD", "Member", "NpzMembers", "refuse_inflation"]

# Stored parameters compress by less than 2:1 (numpy.savez and torch.save do not compress at all); only long runs
# of one value inflate further. A member, or a whole file, declaring more than BOMB_THRESHOLD bytes at more than
# BOMB_RATIO times its compressed size is a decompression bomb, never a trained model.
BOMB_RATIO = 100
BOMB_THRESHOLD = 64 * 2**20


def _inflates(declared: int, compressed: int) -> bool:
    return declared > BOMB_THRESHOLD and declared > BOMB_RATIO * max(compressed, 1)


def refuse_inflation(path, infos) -> None:
    """CheckpointError when the zip directory entries `infos` (zipfile.ZipInfo) declare far more bytes than their
    compressed bytes could hold: one member, or all of them together. Reads nothing but the directory."""
    refused = " far more than any trained model compresses to; it was not loaded."
    for info in infos:
        if _inflates(info.file_size, info.compress_size):
            entry = info.filename.removesuffix(".npy")
            raise CheckpointError(f"{path}: entry {entry} declares {_size(info.file_size)} of data in "
                                  f"{_size(info.compress_size)} of compressed bytes,{refused}")
    declared = sum(info.file_size for info in infos)
    compressed = sum(info.compress_size for info in infos)
    if _inflates(declared, compressed):
        raise CheckpointError(f"{path}: its {len(infos)} entries together declare {_size(declared)} of data in "
                              f"{_size(compressed)} of compressed bytes,{refused}")


@dataclass(frozen=True)
class Member:
    """One .npy member, known from its header: key (the name without .npy), shape, dtype, declared data bytes."""

    key: str
    shape: tuple
    dtype: numpy.dtype
    nbytes: int
    info: zipfile.ZipInfo

    @property
    def ndim(self) -> int:
        return len(self.shape)


class NpzMembers:
    """The .npy members of an .npz file by key, with their headers read; see the module docstring."""

    def __init__(self, path):
        self.path = path
        try:
            self._archive = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, OSError, ValueError, EOFError) as error:
            raise CheckpointError(f"{path} is a corrupt .npz checkpoint ({first_line(error)}); "
                                  "save it again.") from None
        try:
            self.members = self._read_headers()
        except BaseException:
            self._archive.close()
            raise

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def close(self) -> None:
        self._archive.close()

    def _corrupt(self, error) -> CheckpointError:
        return CheckpointError(f"{self.path} is a corrupt .npz checkpoint ({first_line(error)}); save it again.")

    def _read_headers(self) -> dict:
        members = {}
        refuse_inflation(self.path, self._archive.infolist())
        for info in self._archive.infolist():
            name = info.filename
            if info.is_dir() or not name.endswith(".npy"):
                raise CheckpointError(f"{self.path} holds a member {name!r} that is not a numpy array (.npy); "
                                      "a checkpoint holds only arrays, so save it again with nets.")
            key = name[: -len(".npy")]
            if key in members:
                raise CheckpointError(f"{self.path} holds the member {name!r} twice; save it again.")
            members[key] = self._header(key, info)
        return members

    def _header(self, key: str, info: zipfile.ZipInfo) -> Member:
        try:
            with self._archive.open(info) as stream:
                version = npy_format.read_magic(stream)
                if version == (1, 0):
                    shape, _, dtype = npy_format.read_array_header_1_0(stream)
                elif version == (2, 0):
                    shape, _, dtype = npy_format.read_array_header_2_0(stream)
                else:
                    raise CheckpointError(f"{self.path}: entry {key} uses .npy format {version[0]}.{version[1]}, "
                                          "which a checkpoint never needs; save it again with nets.")
                header_bytes = stream.tell()
        except CheckpointError:
            raise
        except (ValueError, zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError) as error:
            raise self._corrupt(error) from None
        if dtype.hasobject:
            raise CheckpointError(f"{self.path} holds pickled Python objects, which are not loaded; "
                                  "save it again with nets.")
        nbytes = math.prod(shape) * dtype.itemsize
        if header_bytes + nbytes != info.file_size:
            raise CheckpointError(f"{self.path}: entry {key} declares {_size(nbytes)} of data, but its member holds "
                                  f"{_size(info.file_size - header_bytes)}; the file is corrupt, so save it again.")
        return Member(key=key, shape=tuple(shape), dtype=dtype, nbytes=nbytes, info=info)

    def read(self, key: str) -> numpy.ndarray:
        """The array of member `key` (its declared bytes, no more), CRC-checked, in the machine's byte order (a
        big-endian file's arrays are converted, so torch.from_numpy takes them too); CheckpointError when damaged."""
        member = self.members[key]
        try:
            with self._archive.open(member.info) as stream:
                array = npy_format.read_array(stream, allow_pickle=False)
                trailing = stream.read(1)  # reaching the end makes zipfile check the CRC
        except (ValueError, zipfile.BadZipFile, zlib.error, EOFError, OSError) as error:
            raise self._corrupt(error) from None
        if trailing:
            raise CheckpointError(f"{self.path}: entry {key} has data after its array; the file is corrupt, "
                                  "so save it again.")
        if not array.dtype.isnative:
            array = array.astype(array.dtype.newbyteorder("="))
        return array


def _size(count: int) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}"
    return f"{count} bytes"
