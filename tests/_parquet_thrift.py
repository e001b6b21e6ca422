"""Damaged parquet files for the reader tests: a small Thrift compact-protocol codec and a model
of a parquet file (footer, column chunks, page headers and bodies) that can be edited and
written back.

A parquet file is ``PAR1``, the column chunks' pages (each a Thrift ``PageHeader`` followed by
its body), the footer (a Thrift ``FileMetaData``), the footer's length (4 bytes) and ``PAR1``.
Structs are read generically (field id -> ``[type, value]``), so fields this module does not
know survive a rewrite unchanged. Field ids used (parquet.thrift):

* ``FileMetaData``: 2 schema, 3 num_rows, 4 row_groups
* ``RowGroup``: 1 columns, 3 num_rows, 5 file_offset, 6 total_compressed_size
* ``ColumnChunk``: 2 file_offset, 3 meta_data (4-7: page index offsets, dropped on rewrite)
* ``ColumnMetaData``: 3 path_in_schema, 6 total_uncompressed_size, 7 total_compressed_size,
  9 data_page_offset, 11 dictionary_page_offset (10, 14, 15: index page and bloom filter, dropped)
* ``PageHeader``: 1 type, 2 uncompressed_page_size, 3 compressed_page_size, 5 data page,
  7 dictionary page, 8 data page v2; ``DictionaryPageHeader``: 1 num_values
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Compact-protocol type ids.
TRUE, FALSE, BYTE, I16, I32, I64, DOUBLE, BINARY, LIST, SET, MAP, STRUCT = range(1, 13)

DATA_PAGE, DICTIONARY_PAGE, DATA_PAGE_V2 = 0, 2, 3


class Struct(dict):
    """A Thrift struct: field id -> [type, value]."""

    def get_v(self, fid: int, default: Any = None) -> Any:
        return self[fid][1] if fid in self else default

    def set_v(self, fid: int, typ: int, value: Any) -> None:
        self[fid] = [typ, value]


@dataclass
class List:
    etype: int
    items: list


class _Reader:
    def __init__(self, data: bytes, at: int) -> None:
        self.b, self.at = data, at

    def byte(self) -> int:
        self.at += 1
        return self.b[self.at - 1]

    def uvarint(self) -> int:
        v = shift = 0
        while True:
            c = self.byte()
            v |= (c & 0x7F) << shift
            shift += 7
            if not c & 0x80:
                return v

    def zigzag(self) -> int:
        v = self.uvarint()
        return (v >> 1) ^ -(v & 1)

    def value(self, t: int) -> Any:
        if t in (TRUE, FALSE):  # a bool inside a list: one byte
            return self.byte() == 1
        if t == BYTE:
            return struct.unpack("b", bytes([self.byte()]))[0]
        if t in (I16, I32, I64):
            return self.zigzag()
        if t == DOUBLE:
            self.at += 8
            return struct.unpack_from("<d", self.b, self.at - 8)[0]
        if t == BINARY:
            n = self.uvarint()
            self.at += n
            return bytes(self.b[self.at - n : self.at])
        if t in (LIST, SET):
            h = self.byte()
            n, et = h >> 4, h & 0xF
            if n == 15:
                n = self.uvarint()
            return List(et, [self.value(et) for _ in range(n)])
        if t == STRUCT:
            return self.struct()
        raise ValueError(f"thrift type {t} at byte {self.at}")  # maps: not in the structs used here

    def struct(self) -> Struct:
        out, last = Struct(), 0
        while (h := self.byte()) != 0:
            t, delta = h & 0xF, h >> 4
            last = last + delta if delta else self.zigzag()
            out[last] = [TRUE, t == TRUE] if t in (TRUE, FALSE) else [t, self.value(t)]
        return out


def read_struct(data: bytes, at: int = 0) -> tuple[Struct, int]:
    """The struct at ``data[at:]`` and the offset just after it."""
    r = _Reader(data, at)
    return r.struct(), r.at


def uvarint(v: int) -> bytes:
    """An unsigned LEB128 varint, as Thrift's compact protocol writes lengths and counts."""
    out = bytearray()
    while True:
        c, v = v & 0x7F, v >> 7
        out.append(c | (0x80 if v else 0))
        if not v:
            return bytes(out)


def _zigzag(v: int) -> bytes:
    return uvarint(((v << 1) ^ (v >> 63)) & (2**64 - 1))


def _value(t: int, v: Any) -> bytes:
    if t in (TRUE, FALSE):
        return bytes([1 if v else 2])
    if t == BYTE:
        return struct.pack("b", v)
    if t in (I16, I32, I64):
        return _zigzag(v)
    if t == DOUBLE:
        return struct.pack("<d", v)
    if t == BINARY:
        return uvarint(len(v)) + v
    if t in (LIST, SET):
        n = len(v.items)
        head = bytes([n << 4 | v.etype]) if n < 15 else bytes([0xF0 | v.etype]) + uvarint(n)
        return head + b"".join(_value(v.etype, x) for x in v.items)
    if t == STRUCT:
        return write_struct(v)
    raise ValueError(f"thrift type {t}")


def write_struct(s: Struct) -> bytes:
    out, last = bytearray(), 0
    for fid in sorted(s):
        t, v = s[fid]
        if t in (TRUE, FALSE):  # a struct's bool is its field type
            t = TRUE if v else FALSE
        if 0 < fid - last <= 15:
            out.append((fid - last) << 4 | t)
        else:
            out += bytes([t]) + _zigzag(fid)
        last = fid
        if t not in (TRUE, FALSE):
            out += _value(t, v)
    return bytes(out + b"\x00")


@dataclass
class Page:
    header: Struct
    body: bytes

    @property
    def kind(self) -> int:
        return self.header.get_v(1)

    def sub(self) -> Struct:
        """The header of this kind of page (data, dictionary or data v2)."""
        return next(self.header.get_v(f) for f in (5, 7, 8) if f in self.header)


class ParquetFile:
    """A parquet file as its footer and, per row group and column, its pages."""

    def __init__(self, data: bytes) -> None:
        assert data[:4] == b"PAR1" and data[-4:] == b"PAR1", "not a parquet file"
        footer = int.from_bytes(data[-8:-4], "little")
        self.meta, _ = read_struct(data, len(data) - 8 - footer)
        self.pages: list[list[list[Page]]] = []  # [row group][column] -> pages
        for rg in self.row_groups():
            cols = []
            for cc in rg.get_v(1).items:
                md = cc.get_v(3)
                at = min(x for x in (md.get_v(9), md.get_v(11)) if x)  # the dictionary page comes first
                end, pages = at + md.get_v(7), []
                while at < end:
                    header, at = read_struct(data, at)
                    size = header.get_v(3)
                    pages.append(Page(header, bytes(data[at : at + size])))
                    at += size
                cols.append(pages)
            self.pages.append(cols)

    @classmethod
    def open(cls, path: Path) -> ParquetFile:
        return cls(Path(path).read_bytes())

    def row_groups(self) -> list[Struct]:
        return self.meta.get_v(4).items

    def column(self, name: str) -> int:
        """The index of the flat column ``name`` in each row group."""
        chunks = self.row_groups()[0].get_v(1).items
        return next(i for i, c in enumerate(chunks) if c.get_v(3).get_v(3).items == [name.encode()])

    def chunk_pages(self, name: str, row_group: int = 0) -> list[Page]:
        return self.pages[row_group][self.column(name)]

    def build(self, keep_uncompressed_totals: bool = False) -> bytes:
        """The file's bytes, with every offset and compressed size recomputed (a page's
        ``compressed_page_size`` is its body's length). A column chunk's
        ``total_uncompressed_size`` is recomputed from its headers (as writers do), unless
        ``keep_uncompressed_totals``: then it keeps the footer's value, as when a page header
        alone is damaged. Page indexes and bloom filters are dropped."""
        out = bytearray(b"PAR1")
        for rg, cols in zip(self.row_groups(), self.pages, strict=True):
            rg_start, rg_size = len(out), 0
            for cc, pages in zip(rg.get_v(1).items, cols, strict=True):
                md, start = cc.get_v(3), len(out)
                first_data = first_dict = None
                uncompressed = 0
                for page in pages:
                    page.header.set_v(3, I32, len(page.body))
                    if page.kind == DICTIONARY_PAGE and first_dict is None:
                        first_dict = len(out)
                    elif page.kind in (DATA_PAGE, DATA_PAGE_V2) and first_data is None:
                        first_data = len(out)
                    header = write_struct(page.header)
                    out += header + page.body
                    uncompressed += len(header) + page.header.get_v(2)
                md.set_v(9, I64, start if first_data is None else first_data)
                md.pop(11, None)
                if first_dict is not None:
                    md.set_v(11, I64, first_dict)
                md.set_v(7, I64, len(out) - start)
                if not keep_uncompressed_totals:
                    md.set_v(6, I64, uncompressed)
                for f in (10, 14, 15):
                    md.pop(f, None)
                for f in (4, 5, 6, 7):
                    cc.pop(f, None)
                cc.set_v(2, I64, start)
                rg_size += len(out) - start
            rg.set_v(5, I64, rg_start)
            rg.set_v(6, I64, rg_size)
        footer = write_struct(self.meta)
        return bytes(out + footer + len(footer).to_bytes(4, "little") + b"PAR1")

    def write(self, path: Path, keep_uncompressed_totals: bool = False) -> None:
        Path(path).write_bytes(self.build(keep_uncompressed_totals))
