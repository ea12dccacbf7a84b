#!/usr/bin/env python3
"""Writes the seed corpus of every fuzz target into fuzz/corpus/<target>/.

The input formats are those documented on the entry points of the
library's src/fuzzing.rs. Seeds are small, well-formed starting points
(a device or program behaving) plus a few hostile edge cases; libFuzzer
mutates from there. Run from anywhere: python3 fuzz/make_corpus.py
"""
import os
import struct

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")


def u8(v): return struct.pack("<B", v & 0xFF)
def u16(v): return struct.pack("<H", v & 0xFFFF)
def u32(v): return struct.pack("<I", v & 0xFFFFFFFF)
def u64(v): return struct.pack("<Q", v & 0xFFFFFFFFFFFFFFFF)


def write(target, name, data):
    d = os.path.join(ROOT, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# Ring operations (split_ring and packed_ring share the opcodes).
ADD, USED, JUMP, SCRIBBLE, STATUS, POP, KICK, NOTIFY = range(8)


def add(n): return u8(ADD) + u8(n - 1)
def used_pick(k, length=512): return u8(USED) + u16(k) + u8(0) + u32(length)
def used_raw(id_, length=512): return u8(USED) + u16(0) + u8(1) + u32(id_) + u32(length)
def status(id_, v): return u8(STATUS) + u16(id_) + u8(v)


def split_seeds():
    normal = u8(3) + u8(1) + add(3) + add(3) + status(0, 0) + used_pick(0) + u8(POP) \
        + u8(KICK) + used_pick(0) + u8(POP) + u8(NOTIFY) + u8(1)
    write("split_ring", "normal", normal)
    write("split_ring", "out_of_range_ids", u8(2) + u8(0) + add(1) + used_raw(0xFFFFFFFF)
          + used_raw(77) + u8(POP) + u8(POP))
    write("split_ring", "repeated_id", u8(2) + u8(0) + add(2) + used_pick(0) + used_pick(0)
          + u8(POP) + u8(POP) + add(2))
    write("split_ring", "index_jump", u8(4) + u8(1) + add(1) + u8(JUMP) + u16(0x8000)
          + u8(POP) * 4)
    # The device rewrites the `next` fields of free descriptors (offsets 14
    # and 30 of the table): chains must still get distinct heads.
    write("split_ring", "descriptor_table_scribble", u8(2) + u8(0)
          + u8(SCRIBBLE) + u16(14) + u16(0x0102) + u8(SCRIBBLE) + u16(30) + u16(1)
          + add(2) + used_pick(0) + u8(POP) + add(3) + used_pick(0) + u8(POP)
          + add(1) + add(1) + add(1) + add(1) + used_pick(0) + used_pick(1) + u8(POP) * 3)
    write("split_ring", "huge_len", u8(3) + u8(0) + add(3) + used_pick(0, 0xFFFFFFFF) + u8(POP))


def packed_used(k, wrap=True): return u8(USED) + u16(k) + u8(0) + u8(0) + u32(512)
def packed_used_flags(id_, flags): return u8(USED) + u16(0) + u8(1) + u16(id_) + u8(1) + u16(flags) + u32(0)


def packed_seeds():
    write("packed_ring", "normal", u8(15) + add(3) + add(2) + packed_used(0) + u8(POP)
          + packed_used(0) + u8(POP) + u8(KICK) + u8(NOTIFY) + u8(0))
    write("packed_ring", "wrap", u8(3) + (add(2) + packed_used(0) + u8(POP)) * 6)
    write("packed_ring", "bad_ids", u8(7) + add(1) + packed_used_flags(0xFFFF, 0x8080)
          + packed_used_flags(3, 0x8080) + u8(POP) + u8(POP))
    write("packed_ring", "cursor_jump", u8(7) + add(4) + u8(JUMP) + u16(1000) + packed_used(0)
          + u8(POP))


def config(capacity=4096, size_max=0, seg_max=126, blk_size=512, exp=0, align_off=0,
           opt_io=1, wce=0, num_queues=1, max_discard=32768, discard_align=1, max_wz=32768):
    b = bytearray(60)
    struct.pack_into("<Q", b, 0, capacity)
    struct.pack_into("<I", b, 8, size_max)
    struct.pack_into("<I", b, 12, seg_max)
    struct.pack_into("<I", b, 20, blk_size)
    b[24] = exp
    b[25] = align_off
    struct.pack_into("<I", b, 28, opt_io)
    b[32] = wce
    struct.pack_into("<H", b, 34, num_queues)
    struct.pack_into("<I", b, 36, max_discard)
    struct.pack_into("<I", b, 44, discard_align)
    struct.pack_into("<I", b, 48, max_wz)
    return bytes(b)


ALL_FEATURES = 0x1_6000_7E46


def config_seeds():
    write("blk_config", "qsd", config() + u64(ALL_FEATURES))
    write("blk_config", "capacity_0", config(capacity=0) + u64(ALL_FEATURES))
    write("blk_config", "blk_size_0", config(blk_size=0) + u64(ALL_FEATURES))
    write("blk_config", "blk_size_odd", config(blk_size=520) + u64(ALL_FEATURES))
    write("blk_config", "seg_max_0", config(seg_max=0) + u64(ALL_FEATURES))
    write("blk_config", "num_queues_0", config(num_queues=0) + u64(ALL_FEATURES))
    write("blk_config", "num_queues_big", config(num_queues=0xFFFF) + u64(ALL_FEATURES))
    write("blk_config", "max_discard_0", config(max_discard=0, discard_align=0) + u64(ALL_FEATURES))
    write("blk_config", "huge_exp", config(exp=60, blk_size=4096) + u64(ALL_FEATURES))


def status_seeds():
    write("virtio_status", "all", bytes(range(256)))
    write("nvme_status", "table", b"".join(u32(v) for v in
                                          (0, 1, 2, 0x80, 0x81, 0xBD, 0xBE, 0x1BD, 0x4080, -5, -4095, 0x7FF)))


def facts(nsze=1 << 20, lbads=12, ms=0, mdts=5, oncs=0xC, flags=1 | 2, wzsl=0, dmrsl=0,
          zoned=None, hw=0):
    b = u64(nsze) + u8(lbads) + u16(ms) + u8(mdts) + u16(oncs)
    if zoned is not None:
        flags |= 4
    b += u8(flags) + u8(wzsl) + u32(dmrsl)
    if zoned is not None:
        mar, mor, zsze, zasl, append = zoned
        b += u32(mar) + u32(mor) + u64(zsze) + u8(zasl) + u8(append)
    return b + u64(hw)


def identify_seeds():
    write("nvme_identify", "qemu_4k", facts())
    write("nvme_identify", "qemu_512", facts(lbads=9, mdts=7, hw=128 * 1024))
    write("nvme_identify", "zoned", facts(zoned=(13, 13, 4096, 0, 1)))
    write("nvme_identify", "huge_nsze", facts(nsze=1 << 60))
    write("nvme_identify", "lbads_31", facts(lbads=31))


def zone_desc(state, zslba, wp, cap=4096, attrs=0):
    d = bytearray(64)
    d[0] = 2
    d[1] = state << 4
    d[2] = attrs
    struct.pack_into("<Q", d, 8, cap)
    struct.pack_into("<Q", d, 16, zslba)
    struct.pack_into("<Q", d, 24, wp)
    return bytes(d)


def zone_seeds():
    header = lambda n: u64(n) + bytes(56)
    geo = u8(12) + u64(16 << 20)
    write("nvme_zone_report", "two", u8(3) + geo + header(2) + zone_desc(1, 0, 0)
          + zone_desc(0xE, 4096, 4096, attrs=4))
    write("nvme_zone_report", "too_many", u8(1) + geo + header(5) + zone_desc(1, 0, 0))
    write("nvme_zone_report", "huge_lba", u8(1) + u8(63) + u64(1 << 40) + header(1)
          + zone_desc(0xE, 1 << 62, 0))


def s(text):
    data = text.encode()
    return u8(len(data)) + data


def capi_seeds():
    # set path (known name 14 = "path", kind 0), connect, start
    setup = u8(0) + u8(1) + u8(14) + u8(0) + u8(3) + u8(4)
    # a write at 4096 of 4096 bytes from buffer offset 0, then do_io
    write_req = u8(8) + u8(0) + u8(0) + u8(1) + u64(4096) + u8(0) + u8(7) + u16(0) + u8(0) \
        + u32(1) + u32(0) + u8(0) + u8(1)
    do_io = u8(8) + u8(0) + u8(0) + u8(2) + u16(0) + u8(1) + u16(0) + u16(0) + u8(0) + u32(0) \
        + u32(0) + u8(0) + u8(9) + u8(9) + u8(9) + u8(0) + u16(1000) + u8(3)
    write("c_api", "write_and_wait", setup + write_req + do_io)
    write("c_api", "unknown_names", u8(0) + u8(0) + s("no-such-property") + u8(3) + s("x")
          + u8(1) + u8(0) + s("num-queues") + u8(3) + s("-5") + u8(3))
    write("c_api", "bogus_region", setup + u8(6) + u8(9) + u64(0x1000) + u64(1 << 40)
          + u64(0) + u64(0) + u8(0) + u32(0) + u8(0) + u8(5) + u8(0) + u8(0))
    write("c_api", "start_max", setup + u8(8) + u8(0) + u8(0) + u8(0) + u64(2**64 - 1) + u8(0)
          + u8(0) + u16(0) + u8(0) + u32(0) + u32(0) + u8(0) + u8(1))


# vhost-user: codes of the requests whose replies the library reads.
GET_FEATURES, GET_PROTOCOL_FEATURES, GET_QUEUE_NUM, GET_CONFIG = 1, 15, 17, 24
GET_MAX_MEM_SLOTS, ADD_MEM_REG = 36, 37
SET_VRING = [8, 10, 9, 12, 13, 18]  # NUM, BASE, ADDR, KICK, CALL, ENABLE


def vu_reply(code, body, flags=0x5, size=None):
    return u32(code) + u32(flags) + u32(len(body) if size is None else size) + body


def vu_config(capacity=2048):
    space = u64(capacity) + bytes(52)
    return u32(0) + u32(60) + u32(0) + space


def vu_stream():
    """The replies of a well-behaved back-end, in the order asked."""
    return [
        vu_reply(GET_FEATURES, u64((1 << 32) | (1 << 30) | (1 << 12))),
        vu_reply(GET_PROTOCOL_FEATURES, u64(0x8f2b)),
        vu_reply(GET_QUEUE_NUM, u64(1)),
        vu_reply(GET_MAX_MEM_SLOTS, u64(509)),
        vu_reply(GET_CONFIG, vu_config()),
        vu_reply(ADD_MEM_REG, u64(0)),
    ] + [vu_reply(c, u64(0)) for c in SET_VRING]


def vhost_user_seeds():
    good = vu_stream()
    write("vhost_user_reply", "well_behaved", b"".join(good))
    short = list(good)
    short[0] = vu_reply(GET_FEATURES, u32(0x40000000), size=4)
    write("vhost_user_reply", "short_features", b"".join(short))
    huge = list(good)
    huge[1] = vu_reply(GET_PROTOCOL_FEATURES, b"", size=0x7FFFFFFF)
    write("vhost_user_reply", "huge_size", b"".join(huge))
    cfg = list(good)
    cfg[4] = vu_reply(GET_CONFIG, vu_config()[:32])
    write("vhost_user_reply", "short_config", b"".join(cfg))
    code = list(good)
    code[3] = vu_reply(GET_QUEUE_NUM, u64(509))
    write("vhost_user_reply", "wrong_code", b"".join(code))
    flags = list(good)
    flags[2] = vu_reply(GET_QUEUE_NUM, u64(1), flags=0x1)
    write("vhost_user_reply", "no_reply_bit", b"".join(flags))
    zero = list(good)
    zero[2] = vu_reply(GET_QUEUE_NUM, u64(0))
    write("vhost_user_reply", "no_queues", b"".join(zero))
    nack = list(good)
    nack[5] = vu_reply(ADD_MEM_REG, u64(1))
    write("vhost_user_reply", "nack", b"".join(nack))
    write("vhost_user_reply", "truncated", b"".join(good)[:100])


def pci_space(caps, status=0x10, first=0x40):
    """A 256-byte config space with vendor capabilities chained from 0x40."""
    b = bytearray(256)
    b[0x06] = status
    b[0x34] = first
    for i, (cfg_type, length, bar, offset, size) in enumerate(caps):
        at = 0x40 + 0x18 * i
        nxt = at + 0x18 if i + 1 < len(caps) else 0
        b[at:at + 4] = bytes([0x09, nxt, length, cfg_type])
        b[at + 4] = bar
        b[at + 8:at + 20] = u32(offset) + u32(size) + u32(4)
    return bytes(b)


def pci_seeds():
    good = [(1, 16, 4, 0, 0x1000), (2, 20, 4, 0x3000, 0x1000), (4, 16, 4, 0x2000, 0x1000)]
    write("virtio_pci_caps", "qemu_like", pci_space(good))
    write("virtio_pci_caps", "bad_bar_short_caps",
          pci_space([(1, 16, 6, 0, 0x1000), (1, 8, 0, 0, 0x1000), (2, 16, 0, 0, 0x1000)]))
    loop = bytearray(pci_space([(4, 16, 9, 0, 0)]))
    loop[0x41] = 0x40
    write("virtio_pci_caps", "looping_list", bytes(loop))
    write("virtio_pci_caps", "truncated_space", pci_space(good)[:0x50])
    # Structures checked against the BAR sizes that follow the space.
    bars = lambda sizes: b"".join(u32(s) for s in sizes)
    write("virtio_pci_caps", "bar_too_small",
          pci_space(good) + bars([0x4000] * 4 + [0x3800, 0x4000]))
    write("virtio_pci_caps", "overlap",
          pci_space([(1, 16, 4, 0, 0x1000), (2, 20, 4, 0xFFC, 0x10)]) + bars([0x4000] * 6))
    write("virtio_pci_caps", "misaligned_notify",
          pci_space([(1, 16, 4, 0, 0x1000), (2, 20, 4, 0x3001, 0x100)]))


if __name__ == "__main__":
    split_seeds()
    packed_seeds()
    config_seeds()
    status_seeds()
    identify_seeds()
    zone_seeds()
    capi_seeds()
    vhost_user_seeds()
    pci_seeds()
    for t in sorted(os.listdir(ROOT)):
        print(t, len(os.listdir(os.path.join(ROOT, t))))
