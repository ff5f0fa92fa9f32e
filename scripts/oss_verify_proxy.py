#!/usr/bin/env python3
"""A proxy in front of moto_server that checks every request's OSS V1 signature with oss2.

    oss_verify_proxy.py --port PORT --upstream http://127.0.0.1:8016 --key AK:SECRET --log FILE

moto_server speaks the OSS protocol (the S3 shape) but checks no signature.
This proxy recomputes each request's signature with Alibaba's own SDK, oss2,
from what arrived on the wire: the Authorization header ("OSS ak:signature")
or a presigned URL's query (OSSAccessKeyId, Expires, Signature). A request
signed as oss2 signs it is passed to the upstream; any other is answered
403 SignatureDoesNotMatch, as OSS answers it. Each request is one JSON line
in the log: method, target, and "ok" or the mismatch with oss2's string to
sign. Path-style addressing only (/bucket/key), as used against an IP.
"""

import argparse
import base64
import hashlib
import hmac
import http.client
import http.server
import json
import os
import sys
import threading
from urllib.parse import unquote, urlsplit

try:
    import oss2
    import oss2.http
except ImportError:  # pragma: no cover
    sys.stderr.write("oss_verify_proxy: python module oss2 is missing (pip install oss2)\n")
    sys.exit(2)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import oss_sign_check  # noqa: E402  (the presigned-URL check, same folder)


def header_signature_problem(method, target, headers, access_key_id, secret):
    """None when the Authorization header is oss2's signature of this request, else why not."""
    authorization = headers.get("authorization", "")
    if not authorization.startswith("OSS "):
        return "no OSS V1 Authorization header: %r" % authorization
    key_id, _, signature = authorization[4:].partition(":")
    if key_id != access_key_id:
        return "access key id %r, expected %r" % (key_id, access_key_id)
    parts = urlsplit(target)
    bucket, _, key = unquote(parts.path)[1:].partition("/")
    params = {name: value for name, value, _raw in oss_sign_check.parse_query(parts.query)}
    request = oss2.http.Request(method, "http://proxy" + parts.path, params=params, headers=dict(headers))
    to_sign = oss2.Auth(access_key_id, secret)._ProviderAuth__get_bytes_to_sign(request, bucket, key)
    expected = base64.b64encode(hmac.new(secret.encode(), to_sign, hashlib.sha1).digest()).decode()
    if signature != expected:
        return "signature %s, oss2 signs %s; oss2's string to sign: %r" % (signature, expected, to_sign)
    return None


def query_signature_problem(target, access_key_id, secret):
    """None when a presigned URL's signature is oss2's, else why not."""
    out = _Lines()
    if oss_sign_check.check("http://127.0.0.1" + target, access_key_id, secret, out=out) == 0:
        return None
    return out.text.strip()


class _Lines:
    def __init__(self):
        self.text = ""

    def write(self, text):
        self.text += text


def make_handler(upstream, access_key_id, secret, log, lock):
    upstream = urlsplit(upstream)

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def handle_any(self):
            if "chunked" in self.headers.get("transfer-encoding", "").lower():
                self.send_error(411, "Length Required (the proxy reads Content-Length bodies only)")
                return
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length) if length else b""
            headers = {name.lower(): value for name, value in self.headers.items()}
            if "Signature=" in self.path:
                problem = query_signature_problem(self.path, access_key_id, secret)
            else:
                problem = header_signature_problem(self.command, self.path, headers, access_key_id, secret)
            with lock:
                log.write(json.dumps({"method": self.command, "target": self.path, "problem": problem}) + "\n")
                log.flush()
            if problem is not None:
                xml = ("<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>SignatureDoesNotMatch</Code>"
                       "<Message>The request signature we calculated does not match the signature you provided.</Message></Error>").encode()
                self.send_response(403)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(xml)))
                self.end_headers()
                self.wfile.write(xml)
                return
            connection = http.client.HTTPConnection(upstream.hostname, upstream.port, timeout=60)
            forwarded = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
            connection.request(self.command, self.path, body=body, headers=forwarded)
            answer = connection.getresponse()
            data = answer.read()
            self.send_response(answer.status, answer.reason)
            for name, value in answer.getheaders():
                if name.lower() not in ("content-length", "connection", "transfer-encoding", "server", "date"):
                    self.send_header(name, value)
            # A HEAD's answer has no body but the object's length.
            length = answer.getheader("content-length", "0") if self.command == "HEAD" else str(len(data))
            self.send_header("Content-Length", length)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)
            connection.close()

        do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = handle_any

    return Handler


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--upstream", required=True)
    ap.add_argument("--key", required=True, help="ACCESS_KEY_ID:SECRET")
    ap.add_argument("--log", required=True)
    args = ap.parse_args(argv[1:])
    access_key_id, _, secret = args.key.partition(":")
    with open(args.log, "a", encoding="utf-8") as log:
        handler = make_handler(args.upstream, access_key_id, secret, log, threading.Lock())
        server = http.server.ThreadingHTTPServer(("127.0.0.1", args.port), handler)
        server.serve_forever()


if __name__ == "__main__":
    sys.exit(main(sys.argv))
