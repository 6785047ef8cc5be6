"""The true length of a FLAC stream, read from its last frame header instead of STREAMINFO.

STREAMINFO's total-samples field is not to be trusted: streaming encoders write 0 ("unknown"), and a
damaged or hostile file can claim anything up to 2^36 - 1. libsndfile believes the field: with 0 it
cannot read the last frames of the stream (its final read fails), and with a wrong value it stops
early or runs past the end. So the length is taken from the stream itself: the last frame ends the
file, its header holds its first sample (or frame number) and its block size, and a valid header
CRC-8 plus frame CRC-16 make a false match practically impossible. `with_total_samples` then
rewrites the field so that libsndfile decodes exactly the stream.

    layout = find_streaminfo(data)          # None when the bytes are not a FLAC stream
    header_total = layout.total_samples     # what STREAMINFO claims (0 = unknown)
    true_total = stream_samples(data, layout)   # from the last frame; None when it cannot be found
    fixed = with_total_samples(data, layout, true_total)

Pure functions on bytes, no decoding. Frame layout: https://xiph.org/flac/format.html
"""
from __future__ import annotations

import dataclasses
import struct

FLAC_MAGIC = b"fLaC"
STREAMINFO_BYTES = 34
_TOTAL_MASK = (1 << 36) - 1
# How far back from the end the last frame header is looked for when STREAMINFO gives no maximum
# frame size: a frame of 65535 samples x 8 channels x 32 bits stored verbatim is ~2 MiB.
_DEFAULT_SEARCH_BYTES = 4 << 20
# An ID3v1 tag (128 bytes, "TAG") may follow the last frame.
_ID3V1 = (b"TAG", 128)


@dataclasses.dataclass(frozen=True)
class StreamInfo:
    """Where STREAMINFO sits in the file and the fields this module needs."""

    offset: int  # byte offset of the STREAMINFO body (34 bytes)
    max_blocksize: int
    max_framesize: int  # 0 = unknown
    total_samples: int  # 0 = unknown


def _id3v2_size(data: bytes) -> int:
    """Bytes taken by an ID3v2 tag at the start of `data` (0 when there is none)."""
    if len(data) < 10 or data[:3] != b"ID3":
        return 0
    size = 0
    for b in data[6:10]:  # "syncsafe" integer: 7 bits per byte
        size = (size << 7) | (b & 0x7F)
    footer = 10 if data[5] & 0x10 else 0
    return 10 + size + footer


def find_streaminfo(data: bytes) -> StreamInfo | None:
    """STREAMINFO of a FLAC stream (after an optional ID3v2 tag); None for anything else."""
    start = _id3v2_size(data)
    body = start + 8  # "fLaC" + the metadata block header
    if data[start:start + 4] != FLAC_MAGIC or len(data) < body + STREAMINFO_BYTES:
        return None
    if data[start + 4] & 0x7F != 0 or int.from_bytes(data[start + 5:start + 8], "big") != STREAMINFO_BYTES:
        return None  # the first metadata block must be STREAMINFO
    info = data[body:body + STREAMINFO_BYTES]
    (packed,) = struct.unpack(">Q", info[10:18])  # 20 bits rate, 3 channels, 5 bits/sample, 36 total
    return StreamInfo(body, int.from_bytes(info[2:4], "big"), int.from_bytes(info[7:10], "big"),
                      packed & _TOTAL_MASK)


def with_total_samples(data: bytes, info: StreamInfo, total: int) -> bytes:
    """`data` with STREAMINFO's total-samples field set to `total` (0 <= total < 2^36)."""
    if not 0 <= total <= _TOTAL_MASK:
        raise ValueError(f"total samples {total} does not fit STREAMINFO's 36 bits")
    at = info.offset + 10
    (packed,) = struct.unpack(">Q", data[at:at + 8])
    return data[:at] + struct.pack(">Q", (packed & ~_TOTAL_MASK) | total) + data[at + 8:]


def _crc_table(poly: int, width: int) -> tuple[int, ...]:
    top, mask = 1 << (width - 1), (1 << width) - 1
    table = []
    for byte in range(256):
        crc = byte << (width - 8)
        for _ in range(8):
            crc = ((crc << 1) ^ poly) & mask if crc & top else (crc << 1) & mask
        table.append(crc)
    return tuple(table)


_CRC8 = _crc_table(0x07, 8)  # FLAC frame header CRC: x^8 + x^2 + x + 1, init 0
_CRC16 = _crc_table(0x8005, 16)  # FLAC frame CRC: x^16 + x^15 + x^2 + 1, init 0


def crc8(data: bytes) -> int:
    crc = 0
    for b in data:
        crc = _CRC8[crc ^ b]
    return crc


def crc16(data: bytes) -> int:
    crc = 0
    for b in data:
        crc = ((crc << 8) & 0xFFFF) ^ _CRC16[(crc >> 8) ^ b]
    return crc


def _utf8_number(data: bytes, at: int) -> tuple[int, int] | None:
    """FLAC's UTF-8-like coded number at `at`: (value, bytes used), None when malformed."""
    if at >= len(data):
        return None
    first = data[at]
    if first < 0x80:
        return first, 1
    # 110xxxxx: 1 continuation byte, 1110xxxx: 2, ... 11111110: 6 (36-bit sample numbers).
    extra = next((n for n in range(1, 7) if first >> (6 - n) == (0xFE << (6 - n) & 0xFF) >> (6 - n)), None)
    if extra is None or at + extra >= len(data):
        return None
    value = first & (0x3F >> extra)
    for b in data[at + 1:at + 1 + extra]:
        if b & 0xC0 != 0x80:
            return None
        value = (value << 6) | (b & 0x3F)
    return value, 1 + extra


def _block_size(code: int, data: bytes, at: int) -> tuple[int, int] | None:
    """(samples in the frame, extra header bytes used) for block-size code `code`."""
    if code == 1:
        return 192, 0
    if 2 <= code <= 5:
        return 576 << (code - 2), 0
    if code == 6 and at < len(data):
        return data[at] + 1, 1
    if code == 7 and at + 1 < len(data):
        return int.from_bytes(data[at:at + 2], "big") + 1, 2
    if code >= 8:
        return 256 << (code - 8), 0
    return None  # 0 is reserved


def frame_end_sample(data: bytes, pos: int, info: StreamInfo) -> int | None:
    """For a valid frame header at `pos`: the sample index just past the frame, else None."""
    if pos + 6 > len(data) or data[pos] != 0xFF or data[pos + 1] & 0xFE != 0xF8:
        return None
    variable = data[pos + 1] & 1
    block_code, rate_code = data[pos + 2] >> 4, data[pos + 2] & 0x0F
    channels_code, size_code, reserved = data[pos + 3] >> 4, (data[pos + 3] >> 1) & 7, data[pos + 3] & 1
    if rate_code == 0x0F or channels_code > 10 or size_code == 3 or reserved:
        return None
    number = _utf8_number(data, pos + 4)
    if number is None or (not variable and number[1] > 6):
        return None
    at = pos + 4 + number[1]
    block = _block_size(block_code, data, at)
    if block is None:
        return None
    at += block[1] + {12: 1, 13: 2, 14: 2}.get(rate_code, 0)
    if at >= len(data) or crc8(data[pos:at]) != data[at]:
        return None
    first_sample = number[0] if variable else number[0] * info.max_blocksize
    return first_sample + block[0]


def without_id3v1(data: bytes, info: StreamInfo) -> bytes:
    """`data` without a trailing ID3v1 tag that follows a whole last frame, else `data` unchanged.

    A streaming decoder (libsndfile's) reads the tag as one more frame and stops with "lost sync",
    which would make a complete recording look cut off.
    """
    size = _ID3V1[1]
    if len(data) < size or data[-size:-size + 3] != _ID3V1[0]:
        return data
    cut = data[:-size]
    return cut if stream_samples(cut, info) is not None else data


def stream_samples(data: bytes, info: StreamInfo) -> int | None:
    """Samples per channel in the stream, from its last frame; None when no valid last frame is found.

    The last frame is the one whose header is valid (sync, reserved bits, CRC-8) and whose CRC-16
    covers exactly the bytes up to the end of the file (or up to a trailing ID3v1 tag). A stream cut
    in the middle of a frame has no such frame: None, and the caller falls back to STREAMINFO.
    """
    ends = [len(data)]
    if len(data) >= _ID3V1[1] and data[-_ID3V1[1]:-_ID3V1[1] + 3] == _ID3V1[0]:
        ends.append(len(data) - _ID3V1[1])
    first_frame = info.offset + STREAMINFO_BYTES
    for end in ends:
        span = (info.max_framesize or _DEFAULT_SEARCH_BYTES) + 16
        pos = data.rfind(b"\xff", max(first_frame, end - span), end - 2)
        while pos >= first_frame:
            total = frame_end_sample(data, pos, info)
            if total is not None and crc16(data[pos:end - 2]) == int.from_bytes(data[end - 2:end], "big"):
                return total
            pos = data.rfind(b"\xff", max(first_frame, end - span), pos)
    return None
