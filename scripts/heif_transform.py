#!/usr/bin/env python3
"""Adds `irot` and/or `imir` transform properties to the primary image of a HEIF file.

libheif 1.15's `heif-enc` (Debian 12) writes neither a rotation nor a mirror, which iPhones
and Android cameras do write. This script edits the boxes of such a file, leaving the coded
image untouched:

- appends the new properties to `ipco` (`irot`: 8-byte header + 1 byte, angle in units of
  90 degrees anti-clockwise; `imir`: 8-byte header + 1 byte, the axis: libheif, and the
  decoder the service uses, read axis 0 as a top-bottom flip and axis 1 as left-right);
- associates them with the primary item in `ipma`, after its existing properties and in the
  order given, marked essential, as ISO/IEC 23008-12 requires of transforms (they apply in
  association order);
- fixes the sizes of `ipma`, `ipco`, `iprp` and `meta`, and moves every file offset in `iloc`
  (construction method 0) by the number of bytes added, since `mdat` follows `meta`.

Check the result with libheif: `heif-info FILE` lists the image, and `heif-convert FILE
out.png` must show it turned.

    scripts/heif_transform.py IN.heic OUT.heic --irot 1 --imir 0
"""

import argparse
import struct
import sys


def boxes(b, start, end):
    """(type, box start, payload start, box end) of the boxes laid out in b[start:end]."""
    pos = start
    while pos < end:
        size, kind = struct.unpack(">I4s", b[pos : pos + 8])
        header = 8
        if size == 1:
            size = struct.unpack(">Q", b[pos + 8 : pos + 16])[0]
            header = 16
        elif size == 0:
            size = end - pos
        yield kind, pos, pos + header, pos + size
        pos += size


def find(b, start, end, kind):
    for k, s, p, e in boxes(b, start, end):
        if k == kind:
            return s, p, e
    sys.exit(f"no {kind.decode()} box")


def box(kind, payload):
    return struct.pack(">I4s", 8 + len(payload), kind) + payload


def read_uint(b, at, size):
    return int.from_bytes(b[at : at + size], "big") if size else 0


def shift_iloc(payload, delta):
    """The `iloc` payload (full box header included) with file offsets moved by delta."""
    out = bytearray(payload)
    version = out[0]
    offset_size, length_size = out[4] >> 4, out[4] & 15
    base_size = out[5] >> 4
    index_size = out[5] & 15 if version in (1, 2) else 0
    pos = 6
    if version < 2:
        count = struct.unpack(">H", out[pos : pos + 2])[0]
        pos += 2
    else:
        count = struct.unpack(">I", out[pos : pos + 4])[0]
        pos += 4
    for _ in range(count):
        pos += 2 if version < 2 else 4  # item id
        method = 0
        if version in (1, 2):
            method = struct.unpack(">H", out[pos : pos + 2])[0] & 15
            pos += 2
        pos += 2  # data reference index
        base_at = pos
        base = read_uint(out, pos, base_size)
        pos += base_size
        extents = struct.unpack(">H", out[pos : pos + 2])[0]
        pos += 2
        moved_base = method == 0 and base_size > 0
        if moved_base:
            out[base_at : base_at + base_size] = (base + delta).to_bytes(base_size, "big")
        for _ in range(extents):
            pos += index_size
            if method == 0 and not moved_base:
                offset = read_uint(out, pos, offset_size)
                out[pos : pos + offset_size] = (offset + delta).to_bytes(offset_size, "big")
            pos += offset_size + length_size
    return bytes(out)


def add_associations(payload, item, indices):
    """The `ipma` payload with property `indices` appended to `item`'s associations."""
    version, flags = payload[0], int.from_bytes(payload[1:4], "big")
    wide_id, wide_index = version >= 1, flags & 1
    count = struct.unpack(">I", payload[4:8])[0]
    out = bytearray(payload[:8])
    pos = 8
    found = False
    for _ in range(count):
        id_size = 4 if wide_id else 2
        entry_id = int.from_bytes(payload[pos : pos + id_size], "big")
        n = payload[pos + id_size]
        size = n * (2 if wide_index else 1)
        existing = payload[pos + id_size + 1 : pos + id_size + 1 + size]
        pos += id_size + 1 + size
        if entry_id == item:
            found = True
            added = b"".join(
                ((0x8000 | i).to_bytes(2, "big") if wide_index else bytes([0x80 | i]))
                for i in indices
            )
            out += entry_id.to_bytes(id_size, "big") + bytes([n + len(indices)]) + existing + added
        else:
            out += payload[pos - size - 1 - id_size : pos]
    if not found:
        sys.exit(f"item {item} has no ipma entry")
    return bytes(out)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("input")
    parser.add_argument("output")
    parser.add_argument("--irot", type=int, choices=range(4), help="quarter turns anti-clockwise")
    parser.add_argument("--imir", type=int, choices=(0, 1), help="mirror axis")
    args = parser.parse_args()
    b = open(args.input, "rb").read()

    meta_start, meta_payload, meta_end = find(b, 0, len(b), b"meta")
    inner = meta_payload + 4  # version and flags
    _, pitm_payload, _ = find(b, inner, meta_end, b"pitm")
    item = (
        struct.unpack(">I", b[pitm_payload + 4 : pitm_payload + 8])[0]
        if b[pitm_payload] >= 1
        else struct.unpack(">H", b[pitm_payload + 4 : pitm_payload + 6])[0]
    )
    iprp_start, iprp_payload, iprp_end = find(b, inner, meta_end, b"iprp")
    ipco_start, ipco_payload, ipco_end = find(b, iprp_payload, iprp_end, b"ipco")
    existing = len(list(boxes(b, ipco_payload, ipco_end)))

    new_props = []
    if args.irot is not None:
        new_props.append(box(b"irot", bytes([args.irot])))
    if args.imir is not None:
        new_props.append(box(b"imir", bytes([args.imir])))
    if not new_props:
        sys.exit("nothing to add: give --irot and/or --imir")
    indices = list(range(existing + 1, existing + 1 + len(new_props)))

    iprp_children = []
    for kind, s, p, e in boxes(b, iprp_payload, iprp_end):
        if kind == b"ipco":
            iprp_children.append(box(b"ipco", b[p:e] + b"".join(new_props)))
        elif kind == b"ipma":
            iprp_children.append(box(b"ipma", add_associations(b[p:e], item, indices)))
        else:
            iprp_children.append(b[s:e])
    new_iprp = box(b"iprp", b"".join(iprp_children))
    delta = len(new_iprp) - (iprp_end - iprp_start)

    meta_children = []
    for kind, s, p, e in boxes(b, inner, meta_end):
        if kind == b"iprp":
            meta_children.append(new_iprp)
        elif kind == b"iloc":
            meta_children.append(box(b"iloc", shift_iloc(b[p:e], delta)))
        else:
            meta_children.append(b[s:e])
    new_meta = box(b"meta", b[meta_payload:inner] + b"".join(meta_children))

    if any(s > meta_start and kind == b"meta" for kind, s, _, _ in boxes(b, 0, len(b))):
        sys.exit("more than one meta box")
    tail = b[meta_end:]
    if b"mdat" not in [k for k, s, _, _ in boxes(b, meta_end, len(b))]:
        sys.exit("mdat does not follow meta: offsets would not move")
    out = b[:meta_start] + new_meta + tail
    open(args.output, "wb").write(out)
    print(f"{args.output}: {len(new_props)} propert{'y' if len(new_props) == 1 else 'ies'} "
          f"added to item {item} (indices {indices}), offsets moved by {delta} bytes")


if __name__ == "__main__":
    main()
