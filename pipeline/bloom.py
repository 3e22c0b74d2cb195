"""A Bloom filter over LSH bucket keys, so that a run looks up only keys that may exist.

Almost every band key of new, distinct text is in no bucket; without the filter each of
them costs a B-tree lookup in a table that grows with the archive. With it, a run's
lookups follow its repeats, not the archive's size. False positives cost one lookup;
there are no false negatives, which is what keeps the results exact.

The filter lives in ``processed/index.bloom`` next to the state database. It carries the
number of the run that last wrote it; the database records the same number in the same
transaction as the buckets. A filter whose number disagrees (a crash between the commit
and the rename) is rebuilt from the buckets, never trusted, and so is a damaged one: the
file carries a CRC-32 of its header fields and bits, checked on load (a filter with bits
zeroed or flipped would silently change which keys are looked up). A file of the first
format, without the checksum, also loads as "none": the next run rebuilds it.
"""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Iterable
from pathlib import Path

import numpy as np

BLOOM_FILE = "index.bloom"
_MAGIC = b"NDBLOOM2"  # NDBLOOM1 files (no checksum) are not read: rebuilt instead
_HEADER = struct.Struct("<8sqqqI")  # magic, generation, keys added, bits, CRC-32 of the rest
HASHES = 4
BITS_PER_KEY = 12  # with 4 hashes: under 1 % false positives at capacity
MIN_BITS = 1 << 23  # 1 MB: small corpora stay cheap


def _bits_for(keys: int) -> int:
    wanted = max(MIN_BITS, keys * BITS_PER_KEY)
    return 1 << (wanted - 1).bit_length()


class BloomFilter:
    """A fixed-size bit array with ``HASHES`` positions per 64-bit key (double hashing)."""

    def __init__(self, bits: int, generation: int = 0, keys: int = 0) -> None:
        if bits & (bits - 1):
            raise ValueError("bits must be a power of two")
        self.bits = bits
        self.generation = generation
        self.keys = keys
        self.array = np.zeros(bits // 8, dtype=np.uint8)

    @classmethod
    def for_keys(cls, keys: int, generation: int = 0) -> BloomFilter:
        # Room for more keys before it must grow (rounded up to a power of two).
        return cls(_bits_for(keys + keys // 2), generation)

    def _positions(self, keys: np.ndarray) -> np.ndarray:
        k = np.ascontiguousarray(keys, dtype=np.int64).view(np.uint64).ravel()
        if self.bits <= 1 << 32:
            # The same positions in 32-bit arithmetic (wrapping mod 2^32 keeps every bit under
            # the mask): half the memory traffic of the 64-bit form below.
            h1 = (k & np.uint64(0xFFFFFFFF)).astype(np.uint32)
            h2 = (k >> np.uint64(32)).astype(np.uint32) | np.uint32(1)
            steps32 = np.arange(HASHES, dtype=np.uint32)[:, None]
            return (h1[None, :] + steps32 * h2[None, :]) & np.uint32(self.bits - 1)
        h1 = k & np.uint64(0xFFFFFFFF)
        h2 = (k >> np.uint64(32)) | np.uint64(1)
        steps = np.arange(HASHES, dtype=np.uint64)[:, None]
        return (h1[None, :] + steps * h2[None, :]) & np.uint64(self.bits - 1)

    ADD_CHUNK = 1 << 20  # keys per pass: the positions of 5M keys at once took ~200 MB

    def add(self, keys: np.ndarray) -> None:
        flat = np.ascontiguousarray(keys).ravel()
        for first in range(0, flat.size, self.ADD_CHUNK):
            pos = self._positions(flat[first : first + self.ADD_CHUNK]).ravel()
            byte, bit = pos >> 3, (pos & 7).astype(np.uint8)
            # One bit value at a time: a fancy-indexed OR with a constant is exact even where a
            # byte repeats (every write stores the same value), and 8 such passes beat ufunc.at 4x.
            for b in range(8):
                where = byte[bit == b]
                self.array[where] |= np.uint8(1 << b)
        self.keys += int(flat.size)

    def might_contain(self, keys: np.ndarray) -> np.ndarray:
        """Boolean mask, same shape as ``keys``: False means certainly absent."""
        if keys.size == 0:
            return np.zeros(keys.shape, dtype=bool)
        pos = self._positions(keys)
        bytes_ = self.array[(pos >> 3).astype(np.int64)]
        hit = (bytes_ >> (pos & 7).astype(np.uint8)) & np.uint8(1)
        return hit.all(axis=0).reshape(keys.shape)

    def crowded(self) -> bool:
        """Past its capacity: rebuild larger so false positives stay rare."""
        return self.keys * BITS_PER_KEY > self.bits

    def save_tmp(self, directory: Path) -> Path:
        tmp = directory / f".tmp-{BLOOM_FILE}"
        # A symlink planted under the temporary name is removed, never written through (O_NOFOLLOW).
        if tmp.is_symlink():
            tmp.unlink()
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0), 0o644)
        with os.fdopen(fd, "wb") as fh:
            fh.write(_HEADER.pack(_MAGIC, self.generation, self.keys, self.bits,
                                  _checksum(self.generation, self.keys, self.bits, self.array)))
            fh.write(memoryview(self.array))
            fh.flush()
            os.fsync(fh.fileno())
        return tmp

    @classmethod
    def load(cls, directory: Path) -> BloomFilter | None:
        return cls.load_path(directory / BLOOM_FILE)

    @classmethod
    def load_path(cls, path: Path) -> BloomFilter | None:
        try:
            with open(path, "rb") as fh:
                header = fh.read(_HEADER.size)
                if len(header) != _HEADER.size:
                    return None
                magic, generation, keys, bits, crc = _HEADER.unpack(header)
                if magic != _MAGIC or bits <= 0 or bits & (bits - 1):
                    return None
                array = np.fromfile(fh, dtype=np.uint8, count=bits // 8)  # one writable copy, no more
                trailing = fh.read(1)
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            return None
        if array.size != bits // 8 or trailing:
            return None  # truncated, or more than a filter
        if crc != _checksum(generation, keys, bits, array):
            return None  # damaged: rebuilt from the buckets, never trusted
        bloom = cls.__new__(cls)
        bloom.bits, bloom.generation, bloom.keys = bits, generation, keys
        bloom.array = array
        return bloom

    @classmethod
    def build(cls, key_chunks: Iterable[np.ndarray], total: int, generation: int) -> BloomFilter:
        bloom = cls.for_keys(total, generation)
        for chunk in key_chunks:
            bloom.add(chunk)
        return bloom


def read_header(path: Path) -> tuple[int, int] | None:
    """``(generation, bits)`` of a filter file whose header is sound and whose size fits it,
    without reading its bits (the cheap check of every run); None otherwise."""
    try:
        with open(path, "rb") as fh:
            header = fh.read(_HEADER.size)
            size = os.fstat(fh.fileno()).st_size
    except OSError:
        return None
    if len(header) != _HEADER.size:
        return None
    magic, generation, _, bits, _ = _HEADER.unpack(header)
    if magic != _MAGIC or bits <= 0 or bits & (bits - 1) or size != _HEADER.size + bits // 8:
        return None
    return generation, bits


def _checksum(generation: int, keys: int, bits: int, array: np.ndarray) -> int:
    crc = zlib.crc32(struct.pack("<qqq", generation, keys, bits))
    return zlib.crc32(memoryview(np.ascontiguousarray(array)), crc)


def install(directory: Path) -> None:
    """Move a saved filter into place (after the commit that matches it)."""
    tmp = directory / f".tmp-{BLOOM_FILE}"
    if tmp.exists():
        os.replace(tmp, directory / BLOOM_FILE)
