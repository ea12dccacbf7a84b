#!/usr/bin/env python3
# SPDX-License-Identifier: MIT OR Apache-2.0
"""A hostile vhost-user-blk back-end for tests/c/test_hostile_vhost_user.c.

usage: server.py SOCKET SCENARIO

Listens on SOCKET, serves one front-end connection and exits when it
hangs up. The scenario "good" is a well-behaved back-end over a 1 MiB disk
in memory (split ring, no EVENT_IDX); every other scenario is the same
back-end with exactly one misbehaviour (the SCENARIOS table below): a
malformed reply, a hang-up or silence at one handshake step, a hostile
config space, or a hostile used ring. docs/robustness.md lists what the
client expects of each.

Written from the vhost-user and virtio 1.x specifications: message header
{request u32, flags u32, size u32}, file descriptors as SCM_RIGHTS, the
split virtqueue layout, and virtio-blk requests {type u32, reserved u32,
sector u64} + data + status byte.
"""

import mmap
import os
import select
import socket
import struct
import sys

# Front-end requests (vhost-user).
GET_FEATURES = 1
SET_FEATURES = 2
SET_OWNER = 3
SET_MEM_TABLE = 5
SET_VRING_NUM = 8
SET_VRING_ADDR = 9
SET_VRING_BASE = 10
GET_VRING_BASE = 11
SET_VRING_KICK = 12
SET_VRING_CALL = 13
SET_VRING_ERR = 14
GET_PROTOCOL_FEATURES = 15
SET_PROTOCOL_FEATURES = 16
GET_QUEUE_NUM = 17
SET_VRING_ENABLE = 18
GET_CONFIG = 24
GET_MAX_MEM_SLOTS = 36
ADD_MEM_REG = 37
REM_MEM_REG = 38

NAMES = {v: k for k, v in list(globals().items()) if k.isupper() and isinstance(v, int)}
CODES = {k: v for v, k in NAMES.items()}

VERSION_1 = 0x1
REPLY = 0x4
NEED_REPLY = 0x8

# Device features: SIZE_MAX, SEG_MAX, BLK_SIZE, FLUSH, MQ, PROTOCOL_FEATURES,
# VERSION_1 (no EVENT_IDX, no packed ring: the client kicks and is called
# for every request).
FEATURES = (1 << 1) | (1 << 2) | (1 << 6) | (1 << 9) | (1 << 12) | (1 << 30) | (1 << 32)
# Protocol features: MQ, REPLY_ACK, CONFIG, CONFIGURE_MEM_SLOTS.
PROTOCOL_FEATURES = (1 << 0) | (1 << 3) | (1 << 9) | (1 << 15)

DISK_SIZE = 1 << 20
SECTOR = 512

# Virtqueue and virtio-blk constants.
DESC_F_NEXT = 1
DESC_F_WRITE = 2
T_IN, T_OUT, T_FLUSH, T_GET_ID = 0, 1, 4, 8
S_OK, S_IOERR, S_UNSUPP = 0, 1, 2

# One misbehaviour per scenario. Keys:
#   reply:    {request name: (code, flags, size, body or None)} replaces that
#             request's reply header (body None: as many zero bytes as the
#             size says, capped at 64 KiB; b"": the header only)
#   close_at: hang up on receiving this request
#   silent:   never answer this request (the connection stays open)
#   nack:     acknowledge this request with status 1
#   value:    {request name: u64} another value for a u64 reply
#   config:   {field: value} in the config space
#   reply_fd: attach a descriptor to every reply
#   used:     what the device does with the used ring, see Device.complete
SCENARIOS = {
    "good": {},
    # Replies (docs/virtio-device-trust.md "vhost-user replies").
    "reply-code": {"reply": {"GET_FEATURES": (GET_PROTOCOL_FEATURES, 0x5, 8, None)}},
    "reply-short-u64": {"reply": {"GET_FEATURES": (GET_FEATURES, 0x5, 4, None)}},
    "reply-short-config": {"reply": {"GET_CONFIG": (GET_CONFIG, 0x5, 20, None)}},
    "reply-huge": {"reply": {"GET_PROTOCOL_FEATURES": (GET_PROTOCOL_FEATURES, 0x5, 0x7FFFFFFF, b"")}},
    "reply-no-reply-flag": {"reply": {"GET_FEATURES": (GET_FEATURES, 0x1, 8, None)}},
    "reply-bad-version": {"reply": {"GET_MAX_MEM_SLOTS": (GET_MAX_MEM_SLOTS, 0x6, 8, None)}},
    "reply-unknown-flag": {"reply": {"GET_QUEUE_NUM": (GET_QUEUE_NUM, 0x25, 8, None)}},
    "reply-short-ack": {"reply": {"SET_VRING_ADDR": (SET_VRING_ADDR, 0x5, 4, None)}},
    "reply-header-only": {"reply": {"GET_FEATURES": (GET_FEATURES, 0x5, 8, b"")}},
    "reply-with-fd": {"reply_fd": True},
    "nack-set-vring-addr": {"nack": "SET_VRING_ADDR"},
    "nack-add-mem-reg": {"nack": "ADD_MEM_REG"},
    "no-protocol-features": {"value": {"GET_FEATURES": FEATURES & ~(1 << 30)}},
    "queue-num-0": {"value": {"GET_QUEUE_NUM": 0}},
    "silent-get-features": {"silent": "GET_FEATURES"},
    # Config space.
    "capacity-0": {"config": {"capacity": 0}},
    "blk-size-0": {"config": {"blk_size": 0}},
    "blk-size-520": {"config": {"blk_size": 520}},
    "seg-max-0": {"config": {"seg_max": 0}},
    "num-queues-0": {"config": {"num_queues": 0}},
    "num-queues-huge": {"config": {"num_queues": 65535}},
    # The config space offers more queues than GET_QUEUE_NUM: 4 against 2.
    "queue-num-2": {"config": {"num_queues": 4}, "value": {"GET_QUEUE_NUM": 2}},
    # Used ring (docs/virtio-device-trust.md "Virtqueues").
    "used-id-out-of-range": {"used": "id-out-of-range"},
    "used-id-repeated": {"used": "id-repeated"},
    "used-len-huge": {"used": "len-huge"},
    "used-idx-jump": {"used": "idx-jump"},
    "complete-twice": {"used": "twice"},
    "status-garbage": {"used": "status-garbage"},
    "never-complete": {"used": "never"},
}
for _step in ("SET_OWNER", "GET_FEATURES", "SET_FEATURES", "GET_PROTOCOL_FEATURES",
              "SET_PROTOCOL_FEATURES", "GET_QUEUE_NUM", "GET_MAX_MEM_SLOTS", "GET_CONFIG",
              "ADD_MEM_REG", "SET_VRING_NUM", "SET_VRING_BASE", "SET_VRING_ADDR",
              "SET_VRING_KICK", "SET_VRING_CALL", "SET_VRING_ENABLE"):
    SCENARIOS["close-at-" + _step.lower().replace("_", "-")] = {"close_at": _step}

CONFIG_FIELDS = {  # name: (offset, struct format)
    "capacity": (0, "<Q"), "size_max": (8, "<I"), "seg_max": (12, "<I"),
    "blk_size": (20, "<I"), "num_queues": (34, "<H"),
}


def disk_pattern():
    """The disk's initial contents: byte i is (i % 4096 + i // 4096) % 256."""
    base = bytes(range(256)) * 17
    return bytearray(b"".join(base[k % 256:k % 256 + 4096] for k in range(DISK_SIZE // 4096)))


class Hangup(Exception):
    """The front-end closed the connection, or the scenario hangs up."""


class Region:
    def __init__(self, fd, user_addr, size, offset):
        self.user_addr, self.size = user_addr, size
        self.map = mmap.mmap(fd, offset + size, mmap.MAP_SHARED)
        self.offset = offset
        os.close(fd)


class Vring:
    def __init__(self):
        self.num = 0
        self.desc = self.avail = self.used = 0
        self.last_avail = 0
        self.used_idx = 0
        self.kick = self.call = None
        self.enabled = False


class Device:
    def __init__(self, scenario):
        self.sc = SCENARIOS[scenario]
        self.disk = disk_pattern()
        self.regions = []
        self.vrings = {}
        self.need_reply = False
        self.requests = 0  # virtio-blk requests seen

    # -- guest memory -------------------------------------------------------
    def locate(self, addr, length):
        for r in self.regions:
            if r.user_addr <= addr and addr + length <= r.user_addr + r.size:
                return r.map, r.offset + addr - r.user_addr
        raise ValueError("address %#x+%d not in any region" % (addr, length))

    def read(self, addr, length):
        m, o = self.locate(addr, length)
        return bytes(m[o:o + length])

    def write(self, addr, data):
        m, o = self.locate(addr, len(data))
        m[o:o + len(data)] = data

    def unpack(self, fmt, addr):
        return struct.unpack(fmt, self.read(addr, struct.calcsize(fmt)))

    def pack(self, fmt, addr, *values):
        self.write(addr, struct.pack(fmt, *values))

    # -- config space -------------------------------------------------------
    def config(self):
        cfg = bytearray(60)
        values = {"capacity": DISK_SIZE // SECTOR, "size_max": 1 << 20, "seg_max": 126,
                  "blk_size": 512, "num_queues": 1}
        values.update(self.sc.get("config", {}))
        for name, value in values.items():
            off, fmt = CONFIG_FIELDS[name]
            struct.pack_into(fmt, cfg, off, value)
        return bytes(cfg)

    # -- control messages ---------------------------------------------------
    def serve(self, conn):
        poller = select.poll()
        poller.register(conn, select.POLLIN)
        watched = {}
        while True:
            for v in self.vrings.values():
                if v.kick is not None and v.kick not in watched:
                    poller.register(v.kick, select.POLLIN)
                    watched[v.kick] = v
            for fd, _ in poller.poll():
                if fd == conn.fileno():
                    self.message(conn)
                elif fd in watched:
                    try:
                        os.read(fd, 8)
                    except BlockingIOError:
                        continue
                    self.process(watched[fd])

    def message(self, conn):
        hdr, anc, _, _ = conn.recvmsg(12, socket.CMSG_SPACE(8 * 4))
        if len(hdr) < 12:
            raise Hangup()
        fds = []
        for level, kind, data in anc:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds += struct.unpack("%di" % (len(data) // 4), data[:len(data) // 4 * 4])
        code, flags, size = struct.unpack("<III", hdr)
        body = conn.recv(size, socket.MSG_WAITALL) if size else b""
        name = NAMES.get(code, str(code))
        if self.sc.get("close_at") == name:
            raise Hangup()
        if self.sc.get("silent") == name:
            for fd in fds:
                os.close(fd)
            return
        reply = self.handle(code, flags, body, fds)
        if reply is None and flags & NEED_REPLY:
            reply = struct.pack("<Q", 1 if self.sc.get("nack") == name else 0)
        if reply is None:
            return
        rcode, rflags, rsize = code, VERSION_1 | REPLY, len(reply)
        if name in self.sc.get("reply", {}):
            rcode, rflags, rsize, fake = self.sc["reply"][name]
            reply = fake if fake is not None else bytes(min(rsize, 65536))
        if name in self.sc.get("value", {}):
            reply = struct.pack("<Q", self.sc["value"][name])
        msg = struct.pack("<III", rcode, rflags, rsize) + reply
        if self.sc.get("reply_fd"):
            extra = os.open("/dev/null", os.O_RDONLY)
            conn.sendmsg([msg], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack("i", extra))])
            os.close(extra)
        else:
            conn.sendall(msg)

    def handle(self, code, flags, body, fds):
        """Does what a request asks; returns its own reply, if it has one."""
        u64 = lambda v: struct.pack("<Q", v)
        if code == GET_FEATURES:
            return u64(FEATURES)
        if code == GET_PROTOCOL_FEATURES:
            return u64(PROTOCOL_FEATURES)
        if code == GET_QUEUE_NUM:
            return u64(1)
        if code == GET_MAX_MEM_SLOTS:
            return u64(32)
        if code == GET_CONFIG:
            offset, size, cflags = struct.unpack_from("<III", body)
            return struct.pack("<III", offset, size, cflags) + self.config()[offset:offset + size]
        if code == ADD_MEM_REG:
            _, guest, size, user, offset = struct.unpack_from("<QQQQQ", body)
            self.regions.append(Region(fds.pop(0), user, size, offset))
        elif code == REM_MEM_REG:
            _, guest, size, user, offset = struct.unpack_from("<QQQQQ", body)
            self.regions = [r for r in self.regions if r.user_addr != user]
        elif code in (SET_VRING_NUM, SET_VRING_BASE, SET_VRING_ENABLE):
            index, num = struct.unpack_from("<II", body)
            v = self.vrings.setdefault(index, Vring())
            if code == SET_VRING_NUM:
                v.num = num
            elif code == SET_VRING_BASE:
                v.last_avail = v.used_idx = num
            else:
                v.enabled = bool(num)
        elif code == GET_VRING_BASE:
            index, _ = struct.unpack_from("<II", body)
            v = self.vrings.pop(index, Vring())
            return struct.pack("<II", index, v.last_avail)
        elif code == SET_VRING_ADDR:
            index, _, desc, used, avail, _ = struct.unpack_from("<IIQQQQ", body)
            v = self.vrings.setdefault(index, Vring())
            v.desc, v.used, v.avail = desc, used, avail
        elif code in (SET_VRING_KICK, SET_VRING_CALL, SET_VRING_ERR):
            (word,) = struct.unpack_from("<Q", body)
            v = self.vrings.setdefault(word & 0xFF, Vring())
            fd = fds.pop(0) if fds and not word & 0x100 else None
            if code == SET_VRING_KICK:
                v.kick = fd
            elif code == SET_VRING_CALL:
                v.call = fd
            elif fd is not None:
                os.close(fd)
        for fd in fds:
            os.close(fd)
        return None

    # -- the virtqueue ------------------------------------------------------
    def process(self, v):
        if not v.enabled or not v.num:
            return
        (avail_idx,) = self.unpack("<H", v.avail + 2)
        done = []
        while v.last_avail != avail_idx:
            slot = v.last_avail % v.num
            (head,) = self.unpack("<H", v.avail + 4 + 2 * slot)
            v.last_avail = (v.last_avail + 1) & 0xFFFF
            try:
                done.append((head, self.request(v, head)))
            except ValueError:
                # The chain points into memory the driver has removed
                # (REM_MEM_REG after it gave up on a broken queue, racing
                # with this loop): drop it, as a back-end must never touch
                # memory it no longer has.
                continue
        if done:
            self.complete(v, done)

    def request(self, v, head):
        """Executes one chain; returns (status address, bytes written)."""
        bufs, i = [], head
        for _ in range(v.num):
            addr, length, flags, nxt = self.unpack("<QIHH", v.desc + 16 * i)
            bufs.append((addr, length, bool(flags & DESC_F_WRITE)))
            if not flags & DESC_F_NEXT:
                break
            i = nxt
        self.requests += 1
        kind, _, sector = self.unpack("<IIQ", bufs[0][0])
        status_addr = bufs[-1][0]
        data = bufs[1:-1]
        status, written, pos = S_OK, 1, sector * SECTOR
        total = sum(length for _, length, _ in data)
        capacity = self.sc.get("config", {}).get("capacity", DISK_SIZE // SECTOR) * SECTOR
        if kind in (T_IN, T_OUT) and pos + total > min(capacity, DISK_SIZE):
            status = S_IOERR
        elif kind == T_IN:
            for addr, length, _ in data:
                self.write(addr, bytes(self.disk[pos:pos + length]))
                pos += length
            written += total
        elif kind == T_OUT:
            for addr, length, _ in data:
                self.disk[pos:pos + length] = self.read(addr, length)
                pos += length
        elif kind == T_GET_ID:
            self.write(data[0][0], b"hostile".ljust(data[0][1], b"\0")[:data[0][1]])
            written += data[0][1]
        elif kind != T_FLUSH:
            status = S_UNSUPP
        if self.sc.get("used") == "status-garbage":
            status = 0x7F
        self.pack("<B", status_addr, status)
        return written

    def push(self, v, entries, advance=None):
        for head, length in entries:
            slot = v.used_idx % v.num
            self.pack("<II", v.used + 4 + 8 * slot, head, length)
            v.used_idx = (v.used_idx + 1) & 0xFFFF
        if advance is not None:
            v.used_idx = (v.used_idx + advance) & 0xFFFF
        self.pack("<H", v.used + 2, v.used_idx)
        if v.call is not None:
            os.write(v.call, struct.pack("<Q", 1))

    def complete(self, v, done):
        """Publishes the used entries, misbehaving as the scenario says."""
        mode = self.sc.get("used")
        if mode == "never":
            return
        if mode == "id-out-of-range":
            done = [(v.num + 5, n) for _, n in done]
        elif mode == "id-repeated":
            done = [(done[0][0], n) for _, n in done]
        elif mode == "len-huge":
            done = [(h, 0x7FFFFFFF) for h, _ in done]
        elif mode == "idx-jump":
            self.push(v, done, advance=v.num + 3)
            return
        elif mode == "twice":
            done = done + done
        self.push(v, done)


def main():
    if len(sys.argv) != 3 or sys.argv[2] not in SCENARIOS:
        sys.stderr.write(__doc__ + "\nscenarios: " + " ".join(SCENARIOS) + "\n")
        sys.exit(2)
    path, scenario = sys.argv[1], sys.argv[2]
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    tmp = path + ".tmp"
    listener.bind(tmp)
    listener.listen(1)
    os.rename(tmp, path)  # the client waits for the path to appear
    listener.settimeout(60)
    try:
        conn, _ = listener.accept()
    except socket.timeout:
        sys.exit(1)
    listener.close()
    device = Device(scenario)
    try:
        device.serve(conn)
    except (Hangup, ConnectionError):
        pass
    conn.close()


if __name__ == "__main__":
    main()
