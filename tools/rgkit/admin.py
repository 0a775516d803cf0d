"""The admin protocol of a rolegrid node, spoken directly over one kept-open
TCP connection (see common/frame.h, grid/admin_protocol.h)."""

from __future__ import annotations

import hashlib
import json as jsonlib
import socket
import struct
import time
from pathlib import Path

# ---------------------------------------------------------------------------
# The admin protocol, spoken directly (see common/frame.h, grid/admin_protocol.h)
#
# frame = header(20) | body | BLAKE2b-128(key, header|body)
# header = "RGRD" | version 1 | type | 0 0 | cluster id (u64 LE) | body len (u32 LE)
# key = BLAKE2b-256(cluster_name \0 secret); cluster id = BLAKE2b-64(cluster_name)
# body = Boost binary archive, no header: request {u64 id, str cmd, vec<str> args},
#        response {u64 id, i32 status, str body, str context}; str = u32 len | bytes.

_MSG_ADMIN_REQUEST = 100
_MSG_ADMIN_RESPONSE = 101
_HDR = struct.Struct("<IBBHQI")
_MAGIC = 0x44524752
_MAC = 16


def read_secret(path):
    data = Path(path).read_bytes()
    return data.rstrip(b"\r\n ")


def frame_keys(cluster, secret):
    """(MAC key, cluster id) the way common/frame.cpp derives them."""
    cluster_b = cluster.encode()
    key = hashlib.blake2b(cluster_b + b"\0" + secret, digest_size=32).digest()
    cluster_id = struct.unpack("<Q", hashlib.blake2b(cluster_b, digest_size=8).digest())[0]
    return key, cluster_id


def make_frame(key, cluster_id, mtype, body, body_len=None, version=1):
    """One authenticated frame; body_len overrides the length field (to forge
    lying headers)."""
    header = _HDR.pack(_MAGIC, version, mtype, 0, cluster_id, len(body) if body_len is None else body_len)
    return header + body + hashlib.blake2b(header + body, digest_size=_MAC, key=key).digest()


class AdminError(Exception):
    """The node answered a request with an error."""


class AdminConn:
    """One kept-open, pipelining connection to a node's admin port."""

    def __init__(self, admin, secret, cluster="rolegrid", timeout=5.0):
        host, port = admin.rsplit(":", 1)
        self.timeout = timeout
        self._key, self._cluster_id = frame_keys(cluster, secret)
        self._sock = socket.create_connection((host, int(port)), timeout=timeout)
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._in = bytearray()
        self._next_id = 1
        self._answers = {}

    def close(self):
        try:
            self._sock.close()
        except OSError:
            pass

    @staticmethod
    def _str(s):
        b = s.encode() if isinstance(s, str) else s
        return struct.pack("<I", len(b)) + b

    def _frame(self, body):
        return make_frame(self._key, self._cluster_id, _MSG_ADMIN_REQUEST, body)

    def encode(self, cmd, args):
        """Returns (id, frame bytes) of one request."""
        rid = self._next_id
        self._next_id += 1
        body = struct.pack("<Q", rid) + self._str(cmd) + struct.pack("<I", len(args))
        body += b"".join(self._str(str(a)) for a in args)
        return rid, self._frame(body)

    def send_raw(self, data):
        self._sock.sendall(data)

    def _read_one(self, deadline):
        while True:
            if len(self._in) >= _HDR.size:
                magic, _ver, mtype, _r, cid, blen = _HDR.unpack_from(self._in, 0)
                if magic != _MAGIC or cid != self._cluster_id or mtype != _MSG_ADMIN_RESPONSE:
                    raise AdminError("bad answer frame from the node")
                total = _HDR.size + blen + _MAC
                if len(self._in) >= total:
                    frame = bytes(self._in[:total])
                    del self._in[:total]
                    mac = hashlib.blake2b(frame[:-_MAC], digest_size=_MAC, key=self._key).digest()
                    if mac != frame[-_MAC:]:
                        raise AdminError("bad authenticator on an answer")
                    body = frame[_HDR.size:-_MAC]
                    rid, status = struct.unpack_from("<Qi", body, 0)
                    (n,) = struct.unpack_from("<I", body, 12)
                    text = body[16:16 + n].decode()
                    return rid, status, text
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no answer from the node within the timeout")
            self._sock.settimeout(left)
            chunk = self._sock.recv(1 << 16)
            if not chunk:
                raise ConnectionError("the node closed the admin connection")
            self._in += chunk

    def wait(self, rid, timeout=None):
        """Waits for the answer to request `rid`; returns parsed JSON or
        raises AdminError with the node's reason."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while rid not in self._answers:
            got, status, text = self._read_one(deadline)
            self._answers[got] = (status, text)
        status, text = self._answers.pop(rid)
        if status == 1:
            raise AdminError(text)
        return jsonlib.loads(text)

    def call(self, cmd, *args, timeout=None):
        rid, frame = self.encode(cmd, args)
        self.send_raw(frame)
        return self.wait(rid, timeout)

    def pipeline(self, requests, window=64, timeout=30.0):
        """Sends (cmd, args) requests with at most `window` in flight; returns
        the answers in order. An error answer raises AdminError."""
        deadline = time.monotonic() + timeout
        results = [None] * len(requests)
        inflight = {}
        it = iter(enumerate(requests))
        done = False
        while True:
            batch = []
            while not done and len(inflight) < window:
                try:
                    i, (cmd, args) = next(it)
                except StopIteration:
                    done = True
                    break
                rid, frame = self.encode(cmd, args)
                inflight[rid] = i
                batch.append(frame)
            if batch:
                self.send_raw(b"".join(batch))
            if not inflight:
                return results
            rid, status, text = self._read_one(deadline)
            i = inflight.pop(rid, None)
            if i is None:
                continue
            if status == 1:
                raise AdminError(f"{requests[i][0]} {' '.join(map(str, requests[i][1]))}: {text}")
            results[i] = jsonlib.loads(text)


