#!/usr/bin/env python3
"""What libjpeg-turbo makes of a JPEG cut short, cut by cut: the table behind the rule in
internal/biz/imaging/mod.rs ("Cut short").

For each file, cuts it (EOI missing; inside the last scan; for a progressive file between and
inside the first scans; inside DQT, SOF and the first SOS), runs `djpeg` on each prefix and
prints its exit status, whether the pixels are those of the whole file, and its warnings.
Needs `djpeg` (Debian libjpeg-turbo-progs).

    scripts/jpeg_truncation.py tests/fixtures/images/*.jpg
"""

import struct
import subprocess
import sys


def djpeg(data):
    run = subprocess.run(["djpeg"], input=data, capture_output=True)
    return run.returncode, run.stdout, run.stderr.decode().strip().replace("\n", " | ")


def segments(b):
    """(marker, start, end) of each segment; a scan's entropy data counts as its SOS's."""
    i, out = 2, []
    while i < len(b):
        while b[i] != 0xFF:
            i += 1
        while b[i] == 0xFF:
            i += 1
        marker = b[i]
        i += 1
        if marker == 0xD9:
            out.append((marker, i - 2, i))
            break
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:
            continue
        length = struct.unpack(">H", b[i : i + 2])[0]
        start, i = i - 2, i + length
        if marker == 0xDA:
            while True:
                j = b.index(b"\xff", i)
                if b[j + 1] == 0xFF:
                    i = j + 1
                elif b[j + 1] == 0 or 0xD0 <= b[j + 1] <= 0xD7:
                    i = j + 2
                else:
                    i = j
                    break
        out.append((marker, start, i))
    return out


def main():
    for path in sys.argv[1:]:
        b = open(path, "rb").read()
        segs = segments(b)
        scans = [s for s in segs if s[0] == 0xDA]
        rc, whole, _ = djpeg(b)
        end = len(b) - 2
        last = scans[-1]
        cuts = [
            ("EOI missing", end),
            ("last scan less 1 byte", end - 1),
            ("last scan less 64 bytes", end - 64),
            ("middle of the last scan", (last[1] + end) // 2),
        ]
        if len(scans) > 1:
            first, second = scans[0], scans[1]
            cuts += [
                ("middle of the first scan", (first[1] + first[2]) // 2),
                ("right after the first scan", first[2]),
                ("middle of the second scan", (second[1] + second[2]) // 2),
            ]
        dqt = next(s for s in segs if s[0] == 0xDB)
        sof = next(s for s in segs if s[0] in (0xC0, 0xC1, 0xC2))
        cuts += [
            ("inside DQT", dqt[1] + 10),
            ("inside SOF", sof[1] + 8),
            ("right after the first SOS", scans[0][1] + 2 + struct.unpack(">H", b[scans[0][1] + 2 : scans[0][1] + 4])[0]),
        ]
        print(f"## {path} ({len(b)} bytes, {len(scans)} scan{'s' if len(scans) > 1 else ''})")
        for name, at in cuts:
            rc, out, warnings = djpeg(b[:at])
            pixels = "whole" if out == whole else ("differ" if out else "none")
            print(f"{name:28} at {at:8}: exit {rc}, pixels {pixels:6} {warnings[:100]}")


if __name__ == "__main__":
    main()
