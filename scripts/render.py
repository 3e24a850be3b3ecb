#!/usr/bin/env python3
"""Renders a config template: replaces ${NAME} with values given as NAME=VALUE.

    render.py TEMPLATE OUTPUT NAME=VALUE...

A placeholder left without a value is an error, so a config never reaches a
proxy half-rendered."""
import re
import sys

if len(sys.argv) < 3:
    sys.exit("usage: render.py TEMPLATE OUTPUT NAME=VALUE...")
template, output, pairs = sys.argv[1], sys.argv[2], sys.argv[3:]
values = dict(p.split("=", 1) for p in pairs)
text = open(template).read()
missing = sorted({m for m in re.findall(r"\$\{([A-Z0-9_]+)\}", text) if m not in values})
if missing:
    sys.exit(f"render.py: {template} needs values for: {', '.join(missing)}")
text = re.sub(r"\$\{([A-Z0-9_]+)\}", lambda m: values[m.group(1)], text)
with open(output, "w") as f:
    f.write(text)
