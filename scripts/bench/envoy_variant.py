#!/usr/bin/env python3
"""Derives the benchmark's Envoy configs from the shipped envoy/envoy.yaml
(already rendered), so that every Envoy case has the same listener, HTTP
connection manager options and rate-limit filter, and differs only in what
the cases compare:

    envoy_variant.py IN.yaml OUT.yaml plain
        without the Paygress wasm filter (the baseline);
    envoy_variant.py IN.yaml OUT.yaml direct ANSWER.json
        without the wasm filter, and the route answers ANSWER.json (from
        `answer.py get`) itself: `direct_response` with its status and body,
        `response_headers_to_add` with its headers (but those Envoy writes on
        every local answer itself: date, server, content-length).

The edits are textual and each must match exactly once, so a change of
envoy/envoy.yaml's shape stops the bench here instead of measuring
something else."""
import json
import re
import sys

# Written by Envoy itself on a local answer (or hop-by-hop).
OWN = {"date", "server", "content-length", "connection", "transfer-encoding"}


def fail(message):
    sys.exit(f"envoy_variant.py: {message} (has envoy/envoy.yaml changed shape?)")


def drop_wasm(text):
    lines = text.split("\n")
    starts = [i for i, l in enumerate(lines) if re.fullmatch(r"\s*- name: envoy\.filters\.http\.wasm", l)]
    ends = [i for i, l in enumerate(lines) if re.fullmatch(r"\s*- name: envoy\.filters\.http\.router", l)]
    if len(starts) != 1 or len(ends) != 1 or ends[0] <= starts[0]:
        fail(f"expected one wasm filter before one router, found {len(starts)} and {len(ends)}")
    return "\n".join(lines[: starts[0]] + lines[ends[0]:])


def direct(text, answer):
    routes = re.findall(r"(?m)^(\s*)route: \{ cluster: upstream, timeout: 30s \}$", text)
    if len(routes) != 1:
        fail(f"expected one `route: {{ cluster: upstream, ... }}`, found {len(routes)}")
    indent = routes[0]
    headers = [
        {"header": {"key": k, "value": v}, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}
        for k, v in answer["headers"]
        if k.lower() not in OWN
    ]
    # JSON is YAML flow syntax: the values are quoted exactly.
    replacement = (
        f"{indent}direct_response: "
        + json.dumps({"status": answer["status"], "body": {"inline_string": answer["body"]}})
        + f"\n{indent}response_headers_to_add: "
        + json.dumps(headers)
    )
    return re.sub(
        r"(?m)^\s*route: \{ cluster: upstream, timeout: 30s \}$",
        lambda _: replacement,
        text,
    )


def main():
    if len(sys.argv) < 4 or sys.argv[3] not in ("plain", "direct"):
        sys.exit(__doc__)
    text = open(sys.argv[1]).read()
    text = drop_wasm(text)
    if sys.argv[3] == "direct":
        if len(sys.argv) != 5:
            sys.exit(__doc__)
        text = direct(text, json.load(open(sys.argv[4])))
    with open(sys.argv[2], "w") as f:
        f.write(text)


if __name__ == "__main__":
    main()
