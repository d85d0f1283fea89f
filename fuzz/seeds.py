#!/usr/bin/env python3
"""Writes the starting inputs of every fuzz target into a directory (default: fuzz/seeds/,
one sub-directory per target): the protocol test vectors (protocol/tests/vectors), the example
configuration and hand-written requests, laid out as each target's entry function reads its
input (see switchboard::fuzzing and switchboard_protocol::fuzzing). The committed corpora
(fuzz/corpus/) started from these; see FUZZING.md.

    python3 fuzz/seeds.py [OUT_DIR]
"""

import base64
import hashlib
import hmac
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "fuzz", "seeds")
VECTORS = os.path.join(ROOT, "protocol", "tests", "vectors")

LARGE = b"\xff"  # size-limit byte of the hub and service targets: 1 MiB
SMALL = b"\x02"  # 32 bytes


def write(target, name, data):
    d = os.path.join(OUT, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def wire(v):
    if "encoded_text" in v:
        return v["encoded_text"].encode()
    return bytes.fromhex(v.get("encoded_hex", ""))


def hub_and_framing():
    with open(os.path.join(VECTORS, "hub-protocol.json")) as f:
        hub = json.load(f)
    entries = hub["vectors"] + hub["invalid"]
    for i, v in enumerate(entries):
        p, data = v["protocol"], wire(v)
        if p == "json":
            write("hub_json", f"vector-{i}", LARGE + data)
        elif p == "messagepack":
            write("hub_messagepack", f"vector-{i}", LARGE + data)
        elif p in ("handshake", "handshake+messagepack"):
            write("handshake", f"vector-{i}", data)
        elif p in ("text-framing", "binary-framing"):
            write("framing", f"vector-{i}", data)
        elif p == "negotiate":
            write("negotiate", f"vector-{i}", data)
    # A stream of several messages, and the same under a small size limit.
    js = b"".join(wire(v) for v in entries if v["protocol"] == "json" and "usage" in v)
    mp = b"".join(wire(v) for v in entries if v["protocol"] == "messagepack" and "usage" in v)
    write("hub_json", "stream", LARGE + js[:4096])
    write("hub_json", "stream-small-limit", SMALL + js[:512])
    write("hub_messagepack", "stream", LARGE + mp[:4096])
    write("hub_messagepack", "stream-small-limit", SMALL + mp[:512])
    write("framing", "mixed", b'{"protocol":"json","version":1}\x1e\x03abc\x80\x01' + b"x" * 128)


def service():
    with open(os.path.join(VECTORS, "service-protocol.json")) as f:
        vectors = json.load(f)
    for i, v in enumerate(vectors):
        write("service_protocol", f"vector-{i}", LARGE + bytes.fromhex(v["framed_hex"]))
    stream = b"".join(bytes.fromhex(v["framed_hex"]) for v in vectors[:40])
    write("service_protocol", "stream", LARGE + stream)
    write("service_protocol", "stream-small-limit", SMALL + stream[:256])


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=")


KEY = b"fuzz-primary-access-key"  # switchboard_protocol::fuzzing::KEYS[0]


def jwt():
    def token(header, claims, key=KEY, alg=hashlib.sha256):
        msg = b64(json.dumps(header).encode()) + b"." + b64(json.dumps(claims).encode())
        return msg + b"." + b64(hmac.new(key, msg, alg).digest())

    exp = 1_700_000_000 + 3600
    client = {"aud": "http://localhost/client/?hub=chat", "exp": exp, "nameid": "u1"}
    server = {"aud": "https://sb.example.com/server/?hub=Chat", "exp": exp, "asrs.s.uid": "u"}
    rest = {"aud": "http://localhost/api/hubs/chat", "exp": exp, "nbf": 1_600_000_000}
    admin = {"aud": "http://localhost/admin", "exp": exp, "role": ["a", "b"]}
    hs256 = {"alg": "HS256", "typ": "JWT"}
    write("jwt", "raw-client", b"\x00" + token(hs256, client) + b"\x00chat")
    write("jwt", "raw-server", b"\x01" + token(hs256, server) + b"\x00chat")
    write("jwt", "raw-admin", b"\x02" + token(hs256, admin) + b"\x00")
    write("jwt", "raw-rest", b"\x03" + token(hs256, rest) + b"\x00/api/hubs/chat/:send")
    write("jwt", "raw-none", b"\x00" + b64(b'{"alg":"none"}') + b"." + b64(json.dumps(client).encode()) + b".\x00chat")
    write("jwt", "raw-expired", b"\x00" + token(hs256, dict(client, exp=1)) + b"\x00chat")
    for sel, claims, target in [
        (4, client, b"chat"),
        (5, server, b"chat"),
        (6, admin, b""),
        (7, rest, b"/api/hubs/chat/users/u1"),
        (12, dict(client, nbf=1_800_000_000), b"chat"),
        (20, dict(client, aud=["x", "http://h/client/?hub=chat&x=1"]), b"chat"),
    ]:
        header = {"alg": "HS512" if sel & 8 else "HS256", "typ": "JWT", "kid": "k"}
        write(
            "jwt",
            f"signed-{sel}",
            bytes([sel]) + json.dumps(header).encode() + b"\x00" + json.dumps(claims).encode() + b"\x00" + target,
        )


def negotiate():
    write("negotiate", "query-v1", b"hub=chat&negotiateVersion=1&useStatefulReconnect=true\x00Bearer abc.def.ghi")
    write("negotiate", "query-v0", b"hub=Chat&access_token=abc.def&id=xyz&asrs_request_id=1")
    write("negotiate", "query-bad", b"hub=1x&hub=y&negotiateVersion=-1&ID=t&access%5Ftoken=q\x00bearer  x ")
    write("negotiate", "query-invalid", b"negotiateVersion=Invalid&useStatefulReconnect=TRUE&%zz=%ff")


def rest():
    paths = [
        "/api/health", "/api/v1/health", "/api/auth/accessKey",
        "/api/hubs/chat", "/api/hubs/chat/:send", "/api/hubs/chat/:closeConnections",
        "/api/hubs/chat/:generateToken", "/api/hubs/chat/users/u%2F1", "/api/hubs/chat/users/u/:send",
        "/api/hubs/chat/users/u/groups", "/api/hubs/chat/users/u/groups/g",
        "/api/v1/hubs/chat/groups/g/users/u", "/api/hubs/chat/groups/g/:send",
        "/api/hubs/chat/groups/g/connections", "/api/hubs/chat/groups/g/connections/c",
        "/api/hubs/chat/connections/c", "/api/hubs/chat/connections/c/:invoke",
        "/api/hubs/chat/connections/c/groups", "/api/hubs/chat/connections/c/groups/g",
        "/api/hubs/chat/connections/c/streams/s/:complete", "/api/HUBS/Chat/Users/u/",
    ]
    query = "api-version=2022-06-01&application=App&ttl=30&excluded=a&excluded=&maxpagesize=10&top=5&continuationToken=YWJj"
    for i, path in enumerate(paths):
        write("rest_route", f"route-{i}", bytes([i % 8]) + path.encode() + b"\x00" + query.encode())
    write("rest_route", "bad-query", b"\x03/api/hubs/chat/users/u/groups/g\x00ttl=-1&maxpagesize=0&top=x&continuationToken=!!")

    bodies = [
        (b"application/json", b'{"target":"send","arguments":[1,"a",{"b":null},[2.5e3]]}'),
        (b"", b'\xef\xbb\xbf{"Target":"m","Arguments":null,"other":1}'),
        (b"text/json; charset=utf-8", b'{"target":"m","arguments":{}}'),
        (b"application/vnd.api+json", b'{"target":""}'),
        (b"text/plain", b"hello"),
    ]
    for i, (ct, body) in enumerate(bodies):
        write("rest_body", f"json-{i}", b"\x00" + ct + b"\x00" + body)
    json_frame = b'{"type":1,"target":"t","arguments":[1]}\x1e'
    mp_frame = bytes.fromhex("0c960180c0a473656e64910190")  # [1, {}, nil, "send", [1], []]
    payload_map = (
        b"\x82\xa4json" + b"\xc4" + bytes([len(json_frame)]) + json_frame
        + b"\xabmessagepack" + b"\xc4" + bytes([len(mp_frame)]) + mp_frame
    )
    write("rest_body", "msgpack-map", b"\x00application/x-msgpack\x00" + payload_map)
    write("rest_body", "msgpack-map-small", b"\x01application/octet-stream\x00" + payload_map)


def upstream():
    settings = json.dumps({
        "UpstreamSettings": {
            "Templates": [
                {"UrlTemplate": "http://localhost:7071/api/{hub}/{category}/{event}",
                 "HubPattern": "chat, news", "CategoryPattern": "messages", "EventPattern": "*"},
                {"urltemplate": "https://h.example/x?e={event}", "Auth": {"Type": "None"}},
            ]
        }
    })
    write("upstream_rules", "settings", settings + "\x00http://127.0.0.1:7071/runtime/webhooks/signalr/{hub}\x00chat\x00broadcast")
    write("upstream_rules", "dots", "{}\x00http://h/{hub}/{category}/{event}\x00..\x00.")
    write("upstream_rules", "odd", '{"upstreamsettings":{"templates":null}}\x00https://[::1]:8/{event}{hub}{x}{\x00a b/c?\x00\u00e9%')


def config():
    with open(os.path.join(ROOT, "switchboard.example.toml")) as f:
        write("config", "example", f.read())
    write("config", "small", 'mode = "serverless"\naccess_keys = ["k1", "k2"]\npublic_endpoint = "https://sb.example.com:8443/"\n'
          '[limits]\nmax_message_size = 65536\n[[upstream]]\nurl_template = "http://127.0.0.1:7071/{hub}"\nevent_pattern = "connected,disconnected"\n')
    write("config", "bad", 'listen = "nope"\n[limits]\nmax_mesage_size = 3\n')


def admin():
    write("admin_settings", "full", json.dumps({
        "mode": "serverless", "accessKeys": ["k1", "k2"],
        "upstream": [{"url_template": "http://localhost:7071/{hub}", "hub_pattern": "chat"},
                     {"UrlTemplate": "https://h/{event}", "EventPattern": "connected"}]}))
    write("admin_settings", "empty", "{}")
    write("admin_settings", "bad", '{"accessKeys":[],"mode":"Classic","upstream":[{"url_template":"ftp://x"}]}')


hub_and_framing()
service()
jwt()
negotiate()
rest()
upstream()
config()
admin()
print(f"seeds written to {OUT}")
