#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Writes the seed corpora of fuzz/corpus/ (re-run after a protocol change):
# well-formed conversations and a few classic malformations, per harness.
import os, struct, sys

here = os.path.dirname(os.path.abspath(__file__))

def frame(t, body=b""):
    return struct.pack(">IB", 1 + len(body), t) + body

def hello(vmin=1, vmax=1):
    return frame(0x01, b"CTNT" + struct.pack(">HH", vmin, vmax) + bytes(32))

def auth():
    return frame(0x03, bytes(32))

def get(req, name):
    return frame(0x10, struct.pack(">I", req) + name)

def trigger(req, handle, reason=0, detail=0):
    return frame(0x12, struct.pack(">IIBB", req, handle, reason, detail))

def lst(req, start=0):
    return frame(0x15, struct.pack(">II", req, start))

def ping(req):
    return frame(0x17, struct.pack(">I", req))

def write(harness, name, data):
    d = os.path.join(here, "corpus", harness)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)

# fuzz_server: first byte = write size (0: all at once)
full = (hello() + auth() + get(1, b"a") + get(2, b"b") + get(3, b"c") +
        get(4, b"nope") + trigger(5, 0) + lst(6) + ping(7) + trigger(0, 2) +
        trigger(8, 99))
write("fuzz_server", "full-at-once", b"\x00" + full)
write("fuzz_server", "full-byte-at-a-time", b"\x01" + full)
write("fuzz_server", "full-7-bytes", b"\x07" + full)
write("fuzz_server", "long-name", b"\x00" + hello() + auth() +
      get(1, b"n" * 4096) + lst(2, 3))
write("fuzz_server", "bad-magic", b"\x00" + frame(0x01, b"XXXX" + bytes(36)))
write("fuzz_server", "too-big", b"\x00" + struct.pack(">IB", 100000, 1))
write("fuzz_server", "get-before-hello", b"\x00" + get(1, b"a"))
write("fuzz_server", "version-mismatch", b"\x00" + hello(2, 3))
write("fuzz_server", "unknown-type", b"\x00" + hello() + auth() + frame(0x7f))
write("fuzz_server", "zero-length", b"\x00" + hello() + auth() +
      b"\x00\x00\x00\x00")
write("fuzz_server", "proxy-limit", b"\x00" + hello() + auth() +
      get(1, b"a") + get(2, b"c") + get(3, b"n" * 4096) + get(4, b"b"))

# fuzz_handshake: a script of actions (see fuzz_handshake.c)
write("fuzz_handshake", "success", bytes([1, 0, 1, 0, 1, 2, 5, 0, 5, 1, 5, 2, 5, 3]))
write("fuzz_handshake", "flipped-bit", bytes([1, 0, 1, 0, 1, 3, 77, 5, 0, 5, 1]))
write("fuzz_handshake", "wrong-secret", bytes([1, 0, 1, 0, 1, 4, 5, 1]))
write("fuzz_handshake", "truncated-hello", bytes([6, 20]))
write("fuzz_handshake", "request-first", bytes([5, 1, 1, 0, 1, 0, 1, 2]))
write("fuzz_handshake", "version-mismatch", bytes([1, 0, 2, 0, 3, 2]))
write("fuzz_handshake", "auth-twice", bytes([1, 0, 1, 0, 1, 4, 2, 5, 1]))
write("fuzz_handshake", "raw-auth", bytes([1, 0, 1, 0, 1, 0, 37]) + auth())
write("fuzz_handshake", "hello-twice", bytes([1, 0, 1, 0, 1, 1, 0, 1, 0, 1, 2]))

# fuzz_decoder: first byte even = whole server stream, odd = after GET
def welcome(flags=0):
    return frame(0x02, struct.pack(">HB", 1, flags) + bytes(64))

def ready():
    return frame(0x04, struct.pack(">I", 16384))

def token(req, handle, trig=0, reason=0, detail=0, cause=b"", owner=b"main"):
    return frame(0x11, struct.pack(">IIBBBH", req, handle, trig, reason, detail,
                                   len(owner)) + owner + cause)

def notify(handle, reason, detail, cause):
    return frame(0x14, struct.pack(">IBB", handle, reason, detail) + cause)

def ack(req, result):
    return frame(0x13, struct.pack(">IB", req, result))

def err(req, code, msg):
    return frame(0x05, struct.pack(">IH", req, code) + msg)

def list_reply(req, nxt, entries):
    body = b""
    for trig, reason, detail, name, cause in entries:
        body += struct.pack(">BBBH", trig, reason, detail, len(name)) + name
        body += struct.pack(">H", len(cause)) + cause
    return frame(0x16, struct.pack(">III", req, nxt, len(entries)) + body)

entries = [(0, 0, 0, b"a", b""), (1, 1, 0, b"b", b"b"), (1, 2, 0, b"c", b"a:b")]
write("fuzz_decoder", "handshake-and-token", b"\x00" + welcome() + ready() +
      token(1, 0) + notify(0, 1, 0, b"root") + list_reply(2, 0, entries))
write("fuzz_decoder", "after-get-token", b"\x01" + token(1, 3) +
      notify(3, 2, 0, b"a:b") + list_reply(2, 0, entries) + frame(0x18, bytes(4)))
write("fuzz_decoder", "after-get-triggered", b"\x01" +
      token(1, 0, 1, 3, 15, b"x"))
write("fuzz_decoder", "after-get-not-found", b"\x01" + err(1, 7, b"no token"))
write("fuzz_decoder", "after-get-paged-list", b"\x01" + token(1, 0) +
      list_reply(2, 1, entries[:1]) + list_reply(3, 0, entries[1:]))
write("fuzz_decoder", "after-get-conn-error", b"\x01" + token(1, 0) +
      err(0, 12, b"server stopping"))
write("fuzz_decoder", "refused-auth", b"\x00" + err(0, 2, b"authentication failed"))
write("fuzz_decoder", "secret-server", b"\x00" + welcome(1) + ready())
write("fuzz_decoder", "bad-version", b"\x00" + frame(0x02, struct.pack(">HB", 9, 0) + bytes(64)))
write("fuzz_decoder", "after-get-ack", b"\x01" + token(1, 0) + ack(2, 1) +
      ack(77, 0) + notify(9, 1, 0, b"zz"))
# fuzz_codec: first byte = decoder (see fuzz_codec.c), the rest a body
def body(f):
    return f[5:]
codec = {
    "hello": (0, body(hello())), "hello-bad-magic": (0, b"XXXX" + bytes(36)),
    "hello-grown": (0, body(hello()) + b"future"),
    "welcome": (1, body(welcome(1))), "auth": (2, bytes(32)),
    "ready": (3, body(ready())), "error": (4, body(err(3, 12, b"stopping"))),
    "error-long": (4, struct.pack(">IH", 0, 4) + b"m" * 1500),
    "get": (5, body(get(1, b"main"))), "get-empty": (5, struct.pack(">I", 1)),
    "token": (6, body(token(1, 2, 1, 2, 0, b"a:b"))),
    "token-bad-owner-len": (6, struct.pack(">IIBBBH", 1, 2, 0, 0, 0, 999)),
    "trigger": (7, body(trigger(4, 2, 1, 0))), "ack": (8, body(ack(4, 1))),
    "notify": (9, body(notify(2, 3, 15, b"root"))),
    "list": (10, body(lst(1, 5))),
    "list-reply": (11, body(list_reply(2, 0, entries))),
    "list-reply-cut": (11, body(list_reply(2, 0, entries))[:-2]),
    "ping": (12, body(ping(9))),
    "utf8": (5, struct.pack(">I", 1) + "n\u00e9\u20ac\U0001f600".encode()),
}
for name, (sel, b) in codec.items():
    write("fuzz_codec", name, bytes([sel]) + b)

# fuzz_address: the address as written
addresses = {
    "path": "/run/app/tokens.sock", "relative": "tokens.sock",
    "ipv4": "127.0.0.1:5001", "ipv6": "[::1]:5001", "loopback": ":0",
    "name": "localhost:65535", "zk-one": "zk://h1:2181",
    "zk-many-chroot": "zk://h1:2181,h2:2182,[::1]:2183/ctok/app",
    "zk-empty": "zk://", "zk-port-0": "zk://h:0", "zk-trailing": "zk://h:1/",
    "zk-dotdot": "zk://h:1/a/../b", "zk-empty-member": "zk://h:1,,h:2",
    "zk-slash": "zk://h:1/", "scheme": "http://x:80", "v6-open": "[::1:5",
    "v6-bare": "::1:5000", "port-big": "h:65536", "long-path": "/" + "p" * 120,
}
for name, a in addresses.items():
    write("fuzz_address", name, a.encode())
print("seeds written")
