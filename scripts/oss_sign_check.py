#!/usr/bin/env python3
"""Checks an Alibaba Cloud OSS presigned URL (signature V1) against Alibaba's own SDK, oss2.

    oss_sign_check.py URL ACCESS_KEY_ID ACCESS_KEY_SECRET [--bucket NAME]
    oss_sign_check.py --selftest

The URL's bucket, object key, absolute Expires and sub-resource parameters
(response-content-disposition, security-token, ...) are parsed from the URL;
oss2 then signs a GET of the same bucket/key with the SAME absolute Expires
(oss2.Auth._sign_url with oss2's clock pinned to Expires, expires=0).
Exit 0 when the URL's Signature equals oss2's byte for byte, 1 otherwise
(both printed, with oss2's string-to-sign), 2 on bad arguments.

Bucket and key: when the host is an IP address or localhost the URL is path
style (/bucket/key, as oss2 builds it); otherwise the bucket is the first label
of the host (bucket.oss-cn-hangzhou.aliyuncs.com/key). For a custom download
domain (CNAME) the bucket is not in the URL: pass --bucket.
"""

import argparse
import ipaddress
import sys
import types
import unittest.mock
from urllib.parse import unquote, urlsplit, urlunsplit

try:
    import oss2
    import oss2.auth
    import oss2.http
except ImportError:  # pragma: no cover
    sys.stderr.write("oss_sign_check: python module oss2 is missing (pip install oss2)\n")
    sys.exit(2)

# Query parameters that carry the signature itself, not signed content.
SIGNATURE_PARAMS = ("OSSAccessKeyId", "Expires", "Signature")


class UrlError(ValueError):
    pass


def parse_query(query):
    """Query string -> list of (name, value), percent-decoded (RFC 3986: '+' is NOT a space)."""
    pairs = []
    if not query:
        return pairs
    for part in query.split("&"):
        if part == "":
            continue
        name, sep, value = part.partition("=")
        pairs.append((unquote(name), unquote(value) if sep else "", value if sep else ""))
    return pairs


def is_ip_or_localhost(host):
    if host == "localhost":
        return True
    try:
        ipaddress.ip_address(host.strip("[]"))
        return True
    except ValueError:
        return False


def parse_presigned(url, bucket=None):
    """Returns dict(bucket, key, expires, access_key_id, signature, raw_signature, params, base_url)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise UrlError("not an http(s) URL: %r" % url)
    host = (parts.hostname or "").lower()
    path = unquote(parts.path)
    if not path.startswith("/"):
        raise UrlError("URL has no path")

    if bucket is not None:
        if host.startswith(bucket.lower() + "."):
            key = path[1:]
        elif path.startswith("/" + bucket + "/"):
            key = path[len(bucket) + 2:]
        else:  # custom domain bound to the bucket
            key = path[1:]
    elif is_ip_or_localhost(host):
        bucket, sep, key = path[1:].partition("/")
        if not sep:
            raise UrlError("path-style URL without /bucket/key: %r" % parts.path)
    else:
        bucket = host.split(".")[0]
        key = path[1:]
    if not bucket or not key:
        raise UrlError("cannot find bucket and key in %r (bucket=%r key=%r)" % (url, bucket, key))

    pairs = parse_query(parts.query)
    seen = {}
    for name, value, _raw in pairs:
        if name in seen:
            raise UrlError("query parameter %s appears twice" % name)
        seen[name] = value
    for name in SIGNATURE_PARAMS:
        if name not in seen:
            raise UrlError("query parameter %s is missing" % name)
    raw_signature = next(raw for name, _v, raw in pairs if name == "Signature")
    if "+" in raw_signature:
        raise UrlError(
            "Signature contains a raw '+' (%r): it must be percent-encoded as %%2B, "
            "a '+' in a query string may be read as a space" % raw_signature
        )
    expires = seen["Expires"]
    if not expires.isdigit():
        raise UrlError("Expires is not an absolute Unix time: %r" % expires)
    params = {name: value for name, value in seen.items() if name not in SIGNATURE_PARAMS}
    return {
        "bucket": bucket,
        "key": key,
        "expires": int(expires),
        "access_key_id": seen["OSSAccessKeyId"],
        "signature": seen["Signature"],
        "raw_signature": raw_signature,
        "params": params,
        "base_url": urlunsplit((parts.scheme, parts.netloc, parts.path, "", "")),
    }


def oss2_sign(parsed, access_key_id, access_key_secret):
    """Signs GET bucket/key with oss2 at the URL's absolute Expires: (signature, oss2 url, string to sign)."""
    params = dict(parsed["params"])
    token = params.get("security-token")
    if token:
        auth = oss2.StsAuth(access_key_id, access_key_secret, token)
        v1 = auth._StsAuth__auth
    else:
        auth = v1 = oss2.Auth(access_key_id, access_key_secret)
    req = oss2.http.Request("GET", parsed["base_url"], params=params)
    # ProviderAuth._sign_url computes int(time.time()) + expires: pin its clock to the
    # URL's absolute Expires and pass expires=0, so the very same Expires is signed.
    pinned = types.SimpleNamespace(time=lambda: float(parsed["expires"]))
    with unittest.mock.patch.object(oss2.auth, "time", pinned):
        signed_url = auth._sign_url(req, parsed["bucket"], parsed["key"], 0)
    again = parse_query(urlsplit(signed_url).query)
    got = {name: value for name, value, _raw in again}
    if got.get("Expires") != str(parsed["expires"]):
        raise RuntimeError("oss2 signed Expires=%r, wanted %r" % (got.get("Expires"), parsed["expires"]))
    string_to_sign = v1._ProviderAuth__get_bytes_to_sign(req, parsed["bucket"], parsed["key"])
    return got["Signature"], signed_url, string_to_sign


def check(url, access_key_id, access_key_secret, bucket=None, out=sys.stdout):
    try:
        parsed = parse_presigned(url, bucket)
    except UrlError as e:
        out.write("oss_sign_check: bad presigned URL: %s\n" % e)
        return 1
    expected, signed_url, string_to_sign = oss2_sign(parsed, access_key_id, access_key_secret)
    problems = []
    if parsed["access_key_id"] != access_key_id:
        problems.append("OSSAccessKeyId is %r, expected %r" % (parsed["access_key_id"], access_key_id))
    if parsed["signature"] != expected:
        problems.append("Signature differs")
    if problems:
        out.write("oss_sign_check: MISMATCH: %s\n" % "; ".join(problems))
        out.write("  bucket:          %r\n" % parsed["bucket"])
        out.write("  key:             %r\n" % parsed["key"])
        out.write("  Expires:         %d\n" % parsed["expires"])
        out.write("  params:          %r\n" % parsed["params"])
        out.write("  URL Signature:   %s\n" % parsed["signature"])
        out.write("  oss2 Signature:  %s\n" % expected)
        out.write("  oss2 string to sign: %r\n" % string_to_sign)
        out.write("  oss2 URL:        %s\n" % signed_url)
        return 1
    out.write("oss_sign_check: OK (bucket %s, key %s, Expires %d)\n" % (parsed["bucket"], parsed["key"], parsed["expires"]))
    return 0


def selftest():
    import io

    ak, sk = "fluxo-oss-ak", "fluxo-oss-sk"
    disposition = "attachment; filename=\"__.csv\"; filename*=UTF-8''%E8%AE%A2%E5%8D%95.csv"
    cases = [
        # (endpoint, bucket, key, params, is_cname, token, pass --bucket)
        ("http://127.0.0.1:8016", "fluxo-oss", "2026/11/30/0199-uuid/订单.csv", {"response-content-disposition": disposition}, False, None, False),
        ("http://localhost:8016", "fluxo-oss", "p/2026/a b+c&d=e.xlsx", {}, False, None, False),
        ("https://oss-cn-hangzhou.aliyuncs.com", "my-bucket", "x/y/z.csv", {"response-content-disposition": disposition}, False, None, False),
        ("https://dl.example.com", "my-bucket", "x/订单.csv", {"response-content-disposition": disposition}, True, None, True),
        ("https://oss-cn-shanghai.aliyuncs.com", "bkt-2", "k.csv", {}, False, "sts/tok+en==", False),
    ]
    failures = 0
    for endpoint, bucket, key, params, cname, token, pass_bucket in cases:
        auth = oss2.StsAuth(ak, sk, token) if token else oss2.Auth(ak, sk)
        b = oss2.Bucket(auth, endpoint, bucket, is_cname=cname)
        url = b.sign_url("GET", key, 600, params=dict(params), slash_safe=True)
        label = "%s %s/%s" % (endpoint, bucket, key)
        try:
            parsed = parse_presigned(url, bucket if pass_bucket else None)
        except UrlError as e:
            print("FAIL parse %s: %s" % (label, e))
            failures += 1
            continue
        want_params = dict(params)
        if token:
            want_params["security-token"] = token
        for name, got, want in (("bucket", parsed["bucket"], bucket), ("key", parsed["key"], key), ("params", parsed["params"], want_params)):
            if got != want:
                print("FAIL round trip %s: %s %r != %r" % (label, name, got, want))
                failures += 1
        sink = io.StringIO()
        if check(url, ak, sk, bucket if pass_bucket else None, out=sink) != 0:
            print("FAIL genuine URL rejected %s:\n%s" % (label, sink.getvalue()))
            failures += 1
        # negative checks: wrong secret, tampered signature, other Expires, other disposition
        sig_raw = parsed["raw_signature"]
        i = len(sig_raw) // 2
        tampered_sig = sig_raw[:i] + ("A" if sig_raw[i] != "A" else "B") + sig_raw[i + 1:]
        variants = {
            "wrong secret": (url, ak, sk + "x"),
            "wrong key id": (url, ak + "x", sk),
            "tampered signature": (url.replace("Signature=" + sig_raw, "Signature=" + tampered_sig), ak, sk),
            "other Expires": (url.replace("Expires=%d" % parsed["expires"], "Expires=%d" % (parsed["expires"] + 1)), ak, sk),
        }
        if params:
            variants["other disposition"] = (url.replace("attachment", "attachmenT"), ak, sk)
        for name, (u, a, s) in variants.items():
            if check(u, a, s, bucket if pass_bucket else None, out=io.StringIO()) == 0:
                print("FAIL %s accepted: %s" % (name, label))
                failures += 1
    # raw '+' in the signature is refused
    if check("http://127.0.0.1:1/b/k?OSSAccessKeyId=a&Expires=1&Signature=ab+c=", "a", "s", out=io.StringIO()) == 0:
        print("FAIL raw '+' accepted")
        failures += 1
    if failures:
        print("selftest: %d failure(s)" % failures)
        return 1
    print("selftest: %d URLs round-tripped and verified, tampered variants rejected" % len(cases))
    return 0


def main(argv):
    if len(argv) == 2 and argv[1] == "--selftest":
        return selftest()
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("url")
    ap.add_argument("access_key_id")
    ap.add_argument("access_key_secret")
    ap.add_argument("--bucket", help="bucket name (needed for a custom download domain)")
    args = ap.parse_args(argv[1:])
    return check(args.url, args.access_key_id, args.access_key_secret, args.bucket)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
