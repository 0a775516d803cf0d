"""The admin protocol of a rolegrid node, spoken directly over one kept-open
TCP connection (see common/frame.h, grid/admin_protocol.h)."""

from __future__ import annotations

import base64
import ctypes
import ctypes.util
import hashlib
import json as jsonlib
import os
import socket
import struct
import time
from pathlib import Path

# ---------------------------------------------------------------------------
# The admin protocol, spoken directly (see common/frame.h, common/keys.h,
# grid/admin_protocol.h)
#
# frame  = header(44) | body encrypted | 16-byte tag: XChaCha20-Poly1305 (IETF),
#          the header as associated data, header[16:40] (session, counter) as nonce
# header = "RGRD" | version 2 | type | key tag | 0 | cluster id (u64 LE) |
#          session (16) | counter (u64 LE) | body len (u32 LE)
# keys   = master: BLAKE2b-256(secret, key=BLAKE2b-256(cluster name));
#          subkey: crypto_kdf(master, id 1 peer / 2 admin, ctx "rolegrid");
#          key tag = BLAKE2b-64(subkey)[0]; cluster id = BLAKE2b-64(cluster name)
# a connection starts with a handshake: each side sends a frame of type 255
# holding a fresh 32-byte nonce (sealed like a datagram: random session,
# subkey); the direction keys are BLAKE2b-512("rolegrid stream v2" | Ni | Nr,
# key=subkey) split in two (initiator->responder first), and every later
# frame has a zero session and the next counter from 1.
# body = Boost binary archive, no header: request {u64 id, str cmd, vec<str> args},
#        response {u64 id, i32 status, str body, str context}; str = u32 len | bytes.

_MSG_ADMIN_REQUEST = 100
_MSG_ADMIN_RESPONSE = 101
_HANDSHAKE = 255
_HDR = struct.Struct("<IBBBBQ16sQI")
_MAGIC = 0x44524752
_VERSION = 2
_MAC = 16
_NONCE = 32
USE_PEER, USE_ADMIN = 1, 2

_sodium = ctypes.CDLL(ctypes.util.find_library("sodium") or "libsodium.so.23")
if _sodium.sodium_init() < 0:
    raise RuntimeError("libsodium failed to initialise")


def read_secret(path):
    """The secret's bytes (the file holds base64 text, see common/keys.h)."""
    return base64.b64decode(Path(path).read_text().strip(), validate=True)


def write_secret(path, raw=None):
    """Writes a secret file the way `rolegrid keygen` does (mode 0600)."""
    raw = os.urandom(32) if raw is None else raw
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(base64.b64encode(raw).decode() + "\n")
    os.chmod(path, 0o600)
    return raw


def frame_keys(cluster, secret, use=USE_PEER):
    """((key, key tag), cluster id) the way common/keys.cpp derives them."""
    cluster_b = cluster.encode()
    master = hashlib.blake2b(secret, digest_size=32, key=hashlib.blake2b(cluster_b, digest_size=32).digest()).digest()
    sub = ctypes.create_string_buffer(32)
    _sodium.crypto_kdf_derive_from_key(sub, ctypes.c_size_t(32), ctypes.c_uint64(use), b"rolegrid", master)
    key = sub.raw
    tag = hashlib.blake2b(key, digest_size=8).digest()[0]
    cluster_id = struct.unpack("<Q", hashlib.blake2b(cluster_b, digest_size=8).digest())[0]
    return (key, tag), cluster_id


def _aead(encrypt, key, header, data):
    """XChaCha20-Poly1305 (IETF) with `header` as associated data and its
    bytes 16..40 as nonce: ciphertext and tag, or the plain body (None if
    the tag does not match)."""
    n = ctypes.c_ulonglong
    out = ctypes.create_string_buffer(len(data) + _MAC)
    out_len = n(0)
    nonce = bytes(header[16:40])
    if encrypt:
        rc = _sodium.crypto_aead_xchacha20poly1305_ietf_encrypt(
            out, ctypes.byref(out_len), data, n(len(data)), header, n(len(header)), None, nonce, key)
    else:
        rc = _sodium.crypto_aead_xchacha20poly1305_ietf_decrypt(
            out, ctypes.byref(out_len), None, data, n(len(data)), header, n(len(header)), nonce, key)
    return None if rc != 0 else out.raw[:out_len.value]


def make_frame(key, cluster_id, mtype, body, body_len=None, version=_VERSION, session=None, counter=1, key_tag=None):
    """One sealed frame. `key` is (key, tag) from frame_keys, or raw 32 bytes
    (a connection's direction key). body_len overrides the length field (to
    forge lying headers)."""
    raw_key, tag = key if isinstance(key, tuple) else (key, 0)
    session = os.urandom(16) if session is None else session
    header = _HDR.pack(_MAGIC, version, mtype, tag if key_tag is None else key_tag, 0, cluster_id, session, counter,
                       len(body) if body_len is None else body_len)
    return header + _aead(True, raw_key, header, body)


def open_frame(key, frame):
    """(header fields, body) of a sealed frame, or None if it does not open."""
    header, rest = frame[:_HDR.size], frame[_HDR.size:]
    body = _aead(False, key, header, rest)
    return None if body is None else (_HDR.unpack(header), body)


class _Stream:
    """One connection's handshake and direction keys (the initiator's side)."""

    def __init__(self, key, cluster_id):
        self.key, self.cluster_id = key, cluster_id
        self.nonce = os.urandom(_NONCE)
        self.tx = self.rx = None
        self.tx_counter = self.rx_counter = 0

    def hello(self):
        return make_frame(self.key, self.cluster_id, _HANDSHAKE, self.nonce)

    def on_hello(self, frame):
        opened = open_frame(self.key[0], frame)
        if opened is None or opened[0][2] != _HANDSHAKE or len(opened[1]) != _NONCE:
            raise AdminError("bad handshake from the node: wrong cluster or secret?")
        okm = hashlib.blake2b(b"rolegrid stream v2" + self.nonce + opened[1], digest_size=64, key=self.key[0]).digest()
        self.tx, self.rx = okm[:32], okm[32:]

    def seal(self, mtype, body):
        self.tx_counter += 1
        return make_frame(self.tx, self.cluster_id, mtype, body, session=bytes(16), counter=self.tx_counter)

    def open(self, frame):
        opened = open_frame(self.rx, frame)
        if opened is None or opened[0][7] != self.rx_counter + 1:
            raise AdminError("bad authenticator on an answer")
        self.rx_counter += 1
        return opened


class AdminError(Exception):
    """The node answered a request with an error."""


class AdminConn:
    """One kept-open, pipelining connection to a node's admin port."""

    def __init__(self, admin, secret, cluster="rolegrid", timeout=5.0):
        host, port = admin.rsplit(":", 1)
        self.timeout = timeout
        key, self._cluster_id = frame_keys(cluster, secret, USE_ADMIN)
        self._stream = _Stream(key, self._cluster_id)
        self._sock = socket.create_connection((host, int(port)), timeout=timeout)
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._in = bytearray()
        self._next_id = 1
        self._answers = {}
        self.send_raw(self._stream.hello())
        self._stream.on_hello(self._read_frame(time.monotonic() + timeout, _HANDSHAKE))

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
        # Sealed now, with the next counter: frames must be sent in the order encoded.
        return self._stream.seal(_MSG_ADMIN_REQUEST, body)

    def encode(self, cmd, args):
        """Returns (id, frame bytes) of one request."""
        rid = self._next_id
        self._next_id += 1
        body = struct.pack("<Q", rid) + self._str(cmd) + struct.pack("<I", len(args))
        body += b"".join(self._str(str(a)) for a in args)
        return rid, self._frame(body)

    def send_raw(self, data):
        self._sock.sendall(data)

    def _read_frame(self, deadline, mtype):
        """The next whole frame's bytes (sealed), of type `mtype`."""
        while True:
            if len(self._in) >= _HDR.size:
                magic, _ver, got_type, _tag, _r, cid, _s, _n, blen = _HDR.unpack_from(self._in, 0)
                if magic != _MAGIC or cid != self._cluster_id or got_type != mtype:
                    raise AdminError("bad answer frame from the node")
                total = _HDR.size + blen + _MAC
                if len(self._in) >= total:
                    frame = bytes(self._in[:total])
                    del self._in[:total]
                    return frame
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no answer from the node within the timeout")
            self._sock.settimeout(left)
            chunk = self._sock.recv(1 << 16)
            if not chunk:
                raise ConnectionError("the node closed the admin connection")
            self._in += chunk

    def _read_one(self, deadline):
        _hdr, body = self._stream.open(self._read_frame(deadline, _MSG_ADMIN_RESPONSE))
        rid, status = struct.unpack_from("<Qi", body, 0)
        (n,) = struct.unpack_from("<I", body, 12)
        text = body[16:16 + n].decode()
        return rid, status, text

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


