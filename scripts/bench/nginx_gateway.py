#!/usr/bin/env python3
"""The NGINX gateway of the benchmark: nginx/paygress.conf.template (already
rendered with scripts/render.py, as the NGINX end-to-end tests render it)
with two changes, each checked to apply:

* the rate limits off: the server block's `limit_req` and `limit_conn`
  lines are removed (the zones stay declared and unused), since wrk from one
  address would otherwise measure 429s, as the Envoys' limits are switched
  off through their admin runtime;
* `access_log off` instead of one line per request on stdout: the Envoys
  log nothing per request either.

    nginx_gateway.py IN.conf OUT.conf
"""
import re
import sys


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    text = open(sys.argv[1]).read()
    limits = re.compile(r"(?m)^[ \t]*limit_(req|conn)[ \t]+[^\n]*\n")
    removed = limits.findall(text)
    if not removed:
        sys.exit("nginx_gateway.py: no limit_req/limit_conn lines found "
                 "(has nginx/paygress.conf.template changed shape?)")
    text = limits.sub("", text)
    text, logs = re.subn(r"(?m)^([ \t]*)access_log [^;\n]*;", r"\1access_log off;", text)
    if logs != 1:
        sys.exit(f"nginx_gateway.py: expected one access_log line, found {logs}")
    with open(sys.argv[2], "w") as f:
        f.write(text)


if __name__ == "__main__":
    main()
