#!/usr/bin/env python3
# SPDX-License-Identifier: MIT OR Apache-2.0
"""Host side of tests/qemu-vm: the layout and pattern guest-io.c writes,
computed independently here.

  layout.py fill-ro IMAGE TAG      write the read-only disk's 4 MiB pattern
  layout.py check IMAGE TAG NAME [detect-zeroes]
                                   after the guest powered off: every byte of
                                   IMAGE is what the guest's writes, discards
                                   and zeroings must have left; the discarded
                                   range is a hole in the file; with
                                   detect-zeroes, so is the range the guest
                                   wrote zeroes to (detect-zeroes=unmap made
                                   it a write-zeroes that may unmap)
Prints ok/not ok lines; exit status 1 if a check failed.
"""
import os
import struct
import sys

SECTOR = 512
MAX_EXTENTS = 4096
LAYOUT_END = 40 << 20
RO_SIZE = 4 << 20
MASK = (1 << 64) - 1
DISCARD = (4 << 20, 1 << 20)
ZERO_WRITE = (16 << 20, 1 << 20)
ZEROED = [DISCARD, (9 << 20, 3 << 19), ((20 << 20) + 512, 3584), ZERO_WRITE]


def layout():
    state = 0x2545F4914F6CDD1D

    def rng():
        nonlocal state
        state ^= (state << 13) & MASK
        state ^= state >> 7
        state ^= (state << 17) & MASK
        return state

    out, cur = [], 0
    while len(out) < MAX_EXTENTS:
        k = rng() % 12
        length = SECTOR << k
        gap = (rng() % 4) * SECTOR
        if k > 0:
            length += (rng() % (1 << k)) * SECTOR
        length = min(length, 1 << 20)
        if cur + gap + length > LAYOUT_END:
            break
        out.append((cur + gap, length))
        cur += gap + length
    return out


def pattern(off, length, tag):
    parts = []
    for o in range(off, off + length, SECTOR):
        fill = bytes([((o // SECTOR) * 7 + tag) & 0xFF]) * (SECTOR - 16)
        parts.append(struct.pack("<QQ", o, tag) + fill)
    return b"".join(parts)


def main():
    cmd, image, tag = sys.argv[1], sys.argv[2], int(sys.argv[3], 0)
    if cmd == "fill-ro":
        with open(image, "r+b") as f:
            f.write(pattern(0, RO_SIZE, tag))
        return 0
    name = sys.argv[4]
    size = os.path.getsize(image)
    want = bytearray(size)
    extents = layout()
    for off, length in extents:
        want[off:off + length] = pattern(off, length, tag)
    for off, length in ZEROED:
        want[off:off + length] = bytes(length)
    with open(image, "rb") as f:
        have = f.read()
    failed = 0
    if have == want:
        print(f"ok - {name}: all {size} bytes of the image as expected after poweroff "
              f"({len(extents)} extents, 4 zeroed ranges, the rest never written)")
    else:
        failed += 1
        bad = [i for i in range(0, size, SECTOR) if have[i:i + SECTOR] != want[i:i + SECTOR]]
        print(f"not ok - {name}: image differs from the expected bytes in {len(bad)} sectors, "
              f"first at offset {bad[0] if bad else '?'}")
    holes = [("discarded range", DISCARD)]
    if sys.argv[5:] == ["detect-zeroes"]:
        holes.append(("range written with zeroes (detect-zeroes=unmap)", ZERO_WRITE))
    fd = os.open(image, os.O_RDONLY)
    for what, (off, length) in holes:
        try:
            data = os.lseek(fd, off, os.SEEK_DATA)
        except OSError:
            data = size
        if data >= off + length:
            print(f"ok - {name}: the {what} [{off}, +{length}) is a hole in the image file")
        else:
            failed += 1
            print(f"not ok - {name}: the {what} [{off}, +{length}) still holds data at {data}")
    os.close(fd)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
