"""Protobuf wire format, just enough to walk a serialized ModelProto without parsing (or copying) its weights.

Used by ``inspect`` (skip large tensors) and ``io`` (memory-map them, write them from their buffers). Standard
library only: this is on the start-up path of ``onnxdeploy inspect``.
"""

from __future__ import annotations

from typing import Iterator

# ModelProto.graph = 7, GraphProto.initializer = 5, TensorProto.raw_data = 9 (all length-delimited)
MODEL_GRAPH_TAG = b"\x3a"
GRAPH_INITIALIZER_TAG = b"\x2a"
TENSOR_RAW_DATA_TAG = b"\x4a"


def read_varint(buf, pos: int) -> tuple[int, int]:
    """The varint at ``buf[pos]`` and the position after it."""
    result = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ValueError("malformed varint")


def encode_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def length_delimited(tag: bytes, size: int) -> bytes:
    """The tag and length prefix of a length-delimited field of ``size`` bytes."""
    return tag + encode_varint(size)


def fields(buf, start: int, end: int) -> Iterator[tuple[int, int, int, int, int]]:
    """Fields of the message in ``buf[start:end]``: (number, wire type, field start, value start, field end).

    The value of a varint field starts at "value start"; that of a length-delimited one is ``buf[value start:end]``.
    """
    pos = start
    while pos < end:
        first = pos
        key, pos = read_varint(buf, pos)
        number, wire = key >> 3, key & 7
        payload = pos
        if wire == 0:
            _, pos = read_varint(buf, pos)
        elif wire == 2:
            length, payload = read_varint(buf, pos)
            pos = payload + length
        elif wire == 1:
            pos += 8
        elif wire == 5:
            pos += 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        if pos > end:
            raise ValueError("truncated protobuf field")
        yield number, wire, first, payload, pos
