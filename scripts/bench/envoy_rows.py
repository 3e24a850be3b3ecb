#!/usr/bin/env python3
"""The envoy part's rows (scripts/bench.sh envoy), from its raw samples.

    envoy_rows.py SAMPLES.tsv OUT.json RATES

SAMPLES.tsv: one `<case id>\t<value>` line per measurement (a case id once
per round). RATES: the fixed rates of the verifier cases, comma-separated.
Writes the rows (scripts/bench/rows.py) as a JSON array."""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from rows import row  # noqa: E402

FREE = "free path: GET /free/x -> upstream"
PAID = "402: GET /premium/x without a token"
BAD = "400: GET /premium/x, X-Cashu: a 1 sat token (pre-check: insufficient_amount)"
PASS = "pass path: GET /compute/x, X-Paygress-Pass -> upstream"
RATE = "verifier /auth at a fixed rate (half unpaid, half passes; ext_authz and NGINX shapes)"
SIZE = "size"
CPU = ("CPU per answer, in microseconds (the proxy's process, and the verifier's "
       "for ext_authz and NGINX; what a noisy machine disturbs least)")

PLAIN = "plain Envoy (envoy.yaml without the filter)"
NOOP = "noop wasm filter"
FILTER = "paygress filter"
EXT = "ext_authz -> verifier /auth"
NGINX = "NGINX auth_request -> verifier /auth"
DIRECT_402 = "Envoy direct_response, same 402"
DIRECT_400 = "Envoy direct_response, same 400"


def main():
    samples_path, out_path, rates = sys.argv[1], sys.argv[2], sys.argv[3]
    samples = {}
    for line in open(samples_path):
        case, value = line.rstrip("\n").split("\t")
        samples.setdefault(case, []).append(float(value))

    rows = []

    def add(section, case, unit, key, baseline=None, baseline_key=None, goal=None):
        if key not in samples:
            sys.exit(f"envoy_rows.py: no samples of {key}")
        rows.append(row(section, case, unit, samples[key], baseline,
                        samples.get(baseline_key) if baseline_key else None, goal))

    add(FREE, PLAIN, "req/s", "plain")
    add(FREE, NOOP, "req/s", "noop", PLAIN, "plain")
    add(FREE, FILTER, "req/s", "free", PLAIN, "plain")
    add(FREE, FILTER + ", vs noop", "req/s", "free", NOOP, "noop")
    add(FREE, EXT, "req/s", "ext_free", PLAIN, "plain")
    add(FREE, NGINX, "req/s", "nginx_free", PLAIN, "plain")

    add(PAID, DIRECT_402, "req/s", "direct402")
    add(PAID, FILTER + ", in-proxy", "req/s", "filter402", DIRECT_402, "direct402", ">= 0.90x")

    add(BAD, DIRECT_400, "req/s", "direct400")
    add(BAD, FILTER + ", in-proxy, no callout", "req/s", "filter400", DIRECT_400, "direct400",
        ">= 0.90x")

    add(PASS, PLAIN, "req/s", "plain_pass")
    add(PASS, FILTER, "req/s", "pass", PLAIN, "plain_pass", ">= 0.90x")
    add(PASS, EXT, "req/s", "ext_pass", PLAIN, "plain_pass")
    add(PASS, NGINX, "req/s", "nginx_pass", PLAIN, "plain_pass")
    add(PASS, FILTER + ", vs ext_authz", "req/s", "pass", EXT, "ext_pass", ">= 3x")
    add(PASS, FILTER + ", vs NGINX", "req/s", "pass", NGINX, "nginx_pass")

    us = "us/answer"
    add(CPU, "free path: " + PLAIN, us, "cpu:plain")
    add(CPU, "free path: " + NOOP, us, "cpu:noop", "free path: " + PLAIN, "cpu:plain")
    add(CPU, "free path: " + FILTER, us, "cpu:free", "free path: " + PLAIN, "cpu:plain")
    add(CPU, "free path: " + FILTER + ", vs noop", us, "cpu:free", "free path: " + NOOP, "cpu:noop")
    add(CPU, "free path: " + EXT, us, "cpu:ext_free", "free path: " + PLAIN, "cpu:plain")
    add(CPU, "free path: " + NGINX, us, "cpu:nginx_free", "free path: " + PLAIN, "cpu:plain")
    add(CPU, "402: " + DIRECT_402, us, "cpu:direct402")
    add(CPU, "402: " + FILTER, us, "cpu:filter402", "402: " + DIRECT_402, "cpu:direct402")
    add(CPU, "400: " + DIRECT_400, us, "cpu:direct400")
    add(CPU, "400: " + FILTER, us, "cpu:filter400", "400: " + DIRECT_400, "cpu:direct400")
    add(CPU, "pass path: " + PLAIN, us, "cpu:plain_pass")
    add(CPU, "pass path: " + FILTER, us, "cpu:pass", "pass path: " + PLAIN, "cpu:plain_pass")
    add(CPU, "pass path: " + EXT, us, "cpu:ext_pass", "pass path: " + PLAIN, "cpu:plain_pass")
    add(CPU, "pass path: " + NGINX, us, "cpu:nginx_pass", "pass path: " + PLAIN, "cpu:plain_pass")

    add(RATE, "RSS before the load (after a 1 s warm-up)", "MiB", "rss_idle")
    for rate in [r for r in rates.split(",") if r]:
        add(RATE, f"{rate}/s: achieved rate", "req/s", f"auth{rate}_rate")
        add(RATE, f"{rate}/s: CPU (100% = one core)", "%", f"auth{rate}_cpu")
        add(RATE, f"{rate}/s: RSS peak", "MiB", f"auth{rate}_rss_peak",
            goal="<= 50 MiB" if rate == "500" else None)
        add(RATE, f"{rate}/s: RSS at the end", "MiB", f"auth{rate}_rss_end")
        add(RATE, f"{rate}/s: latency p50", "ms", f"auth{rate}_p50")
        add(RATE, f"{rate}/s: latency p99", "ms", f"auth{rate}_p99")

    add(SIZE, "paygress_filter.wasm", "bytes", "size_filter", goal="<= 307200 bytes")
    add(SIZE, "noop_filter.wasm", "bytes", "size_noop")

    with open(out_path, "w") as f:
        json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
