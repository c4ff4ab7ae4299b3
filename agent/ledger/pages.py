"""Reading SQLite pages without SQLite, for salvage from a damaged ledger file and its WAL.

Only what salvage needs (https://sqlite.org/fileformat2.html): the database header, the WAL
frames, and the cells of b-tree leaf pages — table leaves (``0x0D``, with a rowid) and index
leaves (``0x0A``) — decoded into column values, following overflow chains where the pages
are there. Nothing read here is trusted: every offset is bounds-checked, a cell that does not
parse is skipped and counted, and the caller verifies each row by its hash or signature.

Every version of a page is a candidate: the page in the main file and each WAL frame that
holds it (the WAL keeps older versions too), so a row lost in one version may be read from
another.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

SQLITE_MAGIC: Final = b"SQLite format 3\x00"
WAL_MAGICS: Final = (0x377F0682, 0x377F0683)
WAL_HEADER: Final = 32
FRAME_HEADER: Final = 24
DEFAULT_PAGE_SIZE: Final = 4096
TABLE_LEAF: Final = 0x0D
INDEX_LEAF: Final = 0x0A
_MAX_OVERFLOW_PAGES: Final = 64

Value = None | int | float | bytes | str


@dataclass(frozen=True, slots=True)
class Cell:
    """One row read from a leaf page: ``rowid`` is None for an index leaf."""

    rowid: int | None
    values: tuple[Value, ...]
    index: bool


@dataclass(frozen=True, slots=True)
class Header:
    page_size: int
    reserved: int
    db_pages: int
    valid_size: bool
    """The header's page count is current (``version-valid-for`` equals the change counter)."""


def read_header(data: bytes) -> Header | None:
    """The database header at the start of ``data``, or None when it is not one."""
    if len(data) < 100 or data[:16] != SQLITE_MAGIC:
        return None
    raw_size = struct.unpack_from(">H", data, 16)[0]
    page_size = 65536 if raw_size == 1 else raw_size
    if page_size < 512 or page_size & (page_size - 1):
        return None
    reserved = data[20]
    change, pages = struct.unpack_from(">II", data, 24)
    valid_for = struct.unpack_from(">I", data, 92)[0]
    return Header(page_size, reserved, pages, valid_for == change and pages > 0)


def header_problem(path: Path) -> str | None:
    """What is wrong with the main file's header and size (None: nothing visible).

    Only the first page and the file size are read, so this costs the same at any size. A
    file shorter than its header says is only a problem when no WAL could hold the rest.
    """
    try:
        size = os.stat(path).st_size
        with path.open("rb") as handle:
            head = handle.read(100)
    except OSError as exc:
        return f"cannot read the ledger file: {exc.strerror}"
    header = read_header(head)
    if header is None:
        return "the file header is not an SQLite header"
    wal = Path(f"{path}-wal")
    wal_size = wal.stat().st_size if wal.exists() else 0
    if wal_size == 0:
        if size % header.page_size:
            return f"the file ends inside a page ({size} bytes, pages of {header.page_size})"
        if header.valid_size and size < header.db_pages * header.page_size:
            return (
                f"the file is truncated: {size // header.page_size} of "
                f"{header.db_pages} pages are there"
            )
    return None


def varint(buf: bytes, pos: int) -> tuple[int, int]:
    """SQLite varint at ``pos``: ``(value, next position)``; IndexError past the end."""
    value = 0
    for i in range(8):
        byte = buf[pos + i]
        value = (value << 7) | (byte & 0x7F)
        if byte < 0x80:
            return value, pos + i + 1
    return (value << 8) | buf[pos + 8], pos + 9


_INT_SIZES: Final = {1: 1, 2: 2, 3: 3, 4: 4, 5: 6, 6: 8}


def decode_record(payload: bytes) -> tuple[Value, ...] | None:
    """The column values of an SQLite record, or None when it does not parse."""
    try:
        header_len, pos = varint(payload, 0)
        if header_len > len(payload) or header_len < 1:
            return None
        types = []
        while pos < header_len:
            serial, pos = varint(payload, pos)
            types.append(serial)
        body = header_len
        values: list[Value] = []
        for serial in types:
            value, body = _column(payload, body, serial)
            values.append(value)
    except (IndexError, ValueError, UnicodeDecodeError):
        return None
    if body != len(payload):
        return None
    return tuple(values)


def _column(payload: bytes, pos: int, serial: int) -> tuple[Value, int]:
    if serial == 0:
        return None, pos
    if serial in _INT_SIZES:
        size = _INT_SIZES[serial]
        if pos + size > len(payload):
            raise ValueError("short integer")
        return int.from_bytes(payload[pos : pos + size], "big", signed=True), pos + size
    if serial == 7:
        if pos + 8 > len(payload):
            raise ValueError("short float")
        return struct.unpack_from(">d", payload, pos)[0], pos + 8
    if serial in (8, 9):
        return serial - 8, pos
    if serial < 12:
        raise ValueError("reserved serial type")
    size = (serial - 12) // 2
    if pos + size > len(payload):
        raise ValueError("short blob or text")
    chunk = payload[pos : pos + size]
    return (chunk if serial % 2 == 0 else chunk.decode("utf-8")), pos + size


class _Pread:
    """Slices of a file read with ``pread``: the pages salvage reads do not stay resident."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._size = os.fstat(fd).st_size

    def __len__(self) -> int:
        return self._size

    def __getitem__(self, part: slice) -> bytes:
        start = part.start or 0
        stop = self._size if part.stop is None else min(part.stop, self._size)
        return os.pread(self._fd, max(0, stop - start), start) if stop > start else b""


class PageSource:
    """Every version of every page of a main file and its WAL.

    :meth:`images` yields a page's versions newest first: the frames of the current WAL
    generation (last written first), the page in the main file, then frames left from an
    older WAL generation. Nothing is held in memory but the WAL's frame index: the main file
    is read page by page, the WAL (a few MiB: the writer folds it in) through ``mmap``.
    """

    def __init__(self, path: Path) -> None:
        self._stack = contextlib.ExitStack()
        self._main = self._open(path)
        self._wal = self._map(Path(f"{path}-wal"))
        header = read_header(bytes(self._main[:100]))
        wal_size = _wal_page_size(self._wal)
        self.page_size = header.page_size if header else wal_size or DEFAULT_PAGE_SIZE
        self.usable = self.page_size - (header.reserved if header else 0)
        self.main_pages = -(-len(self._main) // self.page_size)
        self._current: dict[int, list[int]] = {}
        self._older: dict[int, list[int]] = {}
        self.wal_commits_lost = 0
        """Commit frames of the current WAL generation that SQLite would not replay."""
        self.bad_cells = 0
        if wal_size == self.page_size:
            self._index_wal()

    def _open(self, path: Path) -> bytes | _Pread:
        try:
            handle = self._stack.enter_context(path.open("rb"))
        except OSError:
            return b""
        return _Pread(handle.fileno())

    def _map(self, path: Path) -> bytes | mmap.mmap:
        try:
            handle = self._stack.enter_context(path.open("rb"))
            if os.fstat(handle.fileno()).st_size == 0:
                return b""
            return self._stack.enter_context(mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ))
        except (OSError, ValueError):
            return b""

    def close(self) -> None:
        self._stack.close()

    def __enter__(self) -> PageSource:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def page_numbers(self) -> list[int]:
        return sorted({*range(1, self.main_pages + 1), *self._current, *self._older})

    def images(self, pgno: int) -> Iterator[bytes]:
        step = FRAME_HEADER + self.page_size
        for offset in self._current.get(pgno, ()):
            yield bytes(self._wal[offset + FRAME_HEADER : offset + step])
        if pgno <= self.main_pages:
            image = bytes(self._main[(pgno - 1) * self.page_size : pgno * self.page_size])
            if any(image):
                yield image.ljust(self.page_size, b"\0")  # a last page cut short
        for offset in self._older.get(pgno, ()):
            yield bytes(self._wal[offset + FRAME_HEADER : offset + step])

    def newest(self, pgno: int) -> bytes | None:
        return next(self.images(pgno), None)

    def _index_wal(self) -> None:
        """Index the frames; count commits SQLite's replay would drop (a damaged WAL)."""
        wal = self._wal
        magic, _version, _size, _ckpt, salt1, salt2 = struct.unpack_from(">6I", wal, 0)
        order = "<" if magic == WAL_MAGICS[0] else ">"
        sums = _checksum(order, bytes(wal[:24]), (0, 0))
        replayable = sums == struct.unpack_from(">II", wal, 24)
        step = FRAME_HEADER + self.page_size
        pos = WAL_HEADER
        while pos + step <= len(wal):
            pgno, commit, s1, s2, c1, c2 = struct.unpack_from(">6I", wal, pos)
            current = (s1, s2) == (salt1, salt2)
            if replayable and current:
                sums = _checksum(
                    order, bytes(wal[pos : pos + 8]) + wal[pos + 24 : pos + step], sums
                )
                replayable = sums == (c1, c2)
            if current and commit and not replayable:
                self.wal_commits_lost += 1
            if pgno:
                (self._current if current else self._older).setdefault(pgno, []).insert(0, pos)
            pos += step

    def leaf_cells(self, pgno: int, image: bytes) -> Iterator[Cell]:
        start = 100 if pgno == 1 else 0
        if len(image) < start + 8 or image[start] not in (TABLE_LEAF, INDEX_LEAF):
            return
        index = image[start] == INDEX_LEAF
        count = struct.unpack_from(">H", image, start + 3)[0]
        pointers = start + 8
        if pointers + 2 * count > len(image):
            self.bad_cells += 1
            return
        for i in range(count):
            offset = struct.unpack_from(">H", image, pointers + 2 * i)[0]
            cell = self._cell(image, offset, index)
            if cell is None:
                self.bad_cells += 1
            else:
                yield cell

    def _cell(self, image: bytes, offset: int, index: bool) -> Cell | None:
        try:
            size, pos = varint(image, offset)
            rowid = None
            if not index:
                rowid, pos = varint(image, pos)
                if rowid >= 1 << 63:
                    rowid -= 1 << 64
            payload = self._payload(image, pos, size, index)
        except (IndexError, struct.error):
            return None
        if payload is None:
            return None
        values = decode_record(payload)
        return None if values is None else Cell(rowid, values, index)

    def _payload(self, image: bytes, pos: int, size: int, index: bool) -> bytes | None:
        usable = self.usable
        most = usable - 35 if not index else (usable - 12) * 64 // 255 - 23
        if size <= most:
            return image[pos : pos + size] if pos + size <= len(image) else None
        least = (usable - 12) * 32 // 255 - 23
        local = least + (size - least) % (usable - 4)
        if local > most:
            local = least
        parts = [image[pos : pos + local]]
        nxt = struct.unpack_from(">I", image, pos + local)[0]
        have = local
        for _ in range(_MAX_OVERFLOW_PAGES):
            if have >= size or nxt == 0:
                break
            page = self.newest(nxt)
            if page is None or len(page) < usable:
                return None
            take = min(usable - 4, size - have)
            parts.append(page[4 : 4 + take])
            have += take
            nxt = struct.unpack_from(">I", page, 0)[0]
        return b"".join(parts) if have == size else None


def _wal_page_size(wal: bytes | mmap.mmap) -> int | None:
    if len(wal) < WAL_HEADER or struct.unpack_from(">I", wal, 0)[0] not in WAL_MAGICS:
        return None
    size = struct.unpack_from(">I", wal, 8)[0]
    return size if 512 <= size <= 65536 and not size & (size - 1) else None


def _checksum(order: str, data: bytes, sums: tuple[int, int]) -> tuple[int, int]:
    s0, s1 = sums
    words = struct.unpack(f"{order}{len(data) // 4}I", data)
    for i in range(0, len(words), 2):
        s0 = (s0 + words[i] + s1) & 0xFFFFFFFF
        s1 = (s1 + words[i + 1] + s0) & 0xFFFFFFFF
    return s0, s1
