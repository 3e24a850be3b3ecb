#!/usr/bin/env python3
"""Captures and compares HTTP answers for scripts/bench.sh.

    answer.py get URL OUT.json ["Name: value"]...
        Sends the request wrk sends (GET, HTTP/1.1, `Host: host:port`, the
        given headers and nothing else) over a raw socket and writes the
        answer as JSON: {"status", "headers": [[name, value], ...] in the
        order received, "body"} (the body as text: UTF-8).
    answer.py same A.json B.json
        Exit 0 when both answers have the same status, the same body and the
        same headers (names case-insensitive, in any order) but `date`;
        otherwise print the differences and exit 1.
    answer.py code ANSWER.json
        Prints the `code` of the answer's JSON body (empty when none).
    answer.py describe ANSWER.json
        Prints its status, header names and sizes in one line.
"""
import http.client
import json
import socket
import sys
from collections import Counter
from urllib.parse import urlsplit

# Headers Envoy writes on every local answer by itself; `date` changes.
IGNORED = {"date"}


def get(url, out, headers):
    parts = urlsplit(url)
    host, port = parts.hostname, parts.port or 80
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    lines = [f"GET {target} HTTP/1.1", f"Host: {host}:{port}"] + list(headers)
    request = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(request)
        response = http.client.HTTPResponse(sock, method="GET")
        response.begin()
        body = response.read()
        answer = {
            "status": response.status,
            "headers": [[k, v] for k, v in response.getheaders()],
            "body": body.decode("utf-8"),
        }
    with open(out, "w") as f:
        json.dump(answer, f)


def normalised(answer):
    return Counter((k.lower(), v) for k, v in answer["headers"] if k.lower() not in IGNORED)


def same(a_path, b_path):
    a, b = json.load(open(a_path)), json.load(open(b_path))
    problems = []
    if a["status"] != b["status"]:
        problems.append(f"status {a['status']} != {b['status']}")
    if a["body"] != b["body"]:
        problems.append(
            f"body ({len(a['body'])} vs {len(b['body'])} chars):\n  {a['body']!r}\n  {b['body']!r}"
        )
    ha, hb = normalised(a), normalised(b)
    if ha != hb:
        only_a = sorted((ha - hb).elements())
        only_b = sorted((hb - ha).elements())
        problems.append(f"headers only in {a_path}: {only_a}; only in {b_path}: {only_b}")
    if problems:
        print("\n".join(problems))
        sys.exit(1)


def code(path):
    try:
        print(json.loads(json.load(open(path))["body"]).get("code", ""))
    except (ValueError, AttributeError):
        print("")


def describe(path):
    a = json.load(open(path))
    names = ", ".join(k.lower() for k, _ in a["headers"])
    size = sum(len(k) + len(v) + 4 for k, v in a["headers"])
    print(f"{a['status']}, {len(a['body'].encode())} body bytes, {size} header bytes ({names})")


if __name__ == "__main__":
    if len(sys.argv) >= 4 and sys.argv[1] == "get":
        get(sys.argv[2], sys.argv[3], sys.argv[4:])
    elif len(sys.argv) == 4 and sys.argv[1] == "same":
        same(sys.argv[2], sys.argv[3])
    elif len(sys.argv) == 3 and sys.argv[1] == "code":
        code(sys.argv[2])
    elif len(sys.argv) == 3 and sys.argv[1] == "describe":
        describe(sys.argv[2])
    else:
        sys.exit(__doc__)
