#!/usr/bin/env python3
"""The last step of scripts/bench.sh: merges the rows every part that ran
wrote to $BENCH_PARTS/<part>.json (envoy, redeem, replicas, then any other
in name order), prints one table grouped by section, and writes

    OUT_DIR/bench-<stamp>.json and a copy OUT_DIR/latest.json:
    {"meta": {"date", "commit": {"sha", "dirty"}, "nproc", "loadavg_start",
              "loadavg_end", "envoy_version", "rounds", "duration",
              "connections"},
     "rows": [...]}   (the format in scripts/bench/rows.py)

    report.py PARTS_DIR OUT_DIR

From the environment: BENCH_STAMP (UTC yyyymmddThhmmss, the run's start),
BENCH_LOADAVG_START, BENCH_COMMIT and BENCH_DIRTY (true/false: HEAD and
whether the tree differed from it when the run started; asked of git now
when unset), BENCH_ROUNDS, BENCH_DURATION, BENCH_CONNECTIONS, BENCH_ENVOY
(the Envoy binary, for its version)."""
import datetime
import json
import os
import re
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from rows import KEYS, goal_met  # noqa: E402

ORDER = ["envoy", "redeem", "replicas"]
DECIMALS = {"req/s": 0, "ms": 2, "MiB": 1, "%": 1, "bytes": 0}


def git(*args):
    try:
        return subprocess.run(["git", *args], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None


def envoy_version(binary):
    if not binary or not os.access(binary, os.X_OK):
        return None
    try:
        out = subprocess.run([binary, "--version"], capture_output=True, text=True,
                             timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    m = re.search(r"/(\d+\.\d+\.\d+)/", out)
    return m.group(1) if m else out.strip() or None


def loadavg(text):
    return [float(x) for x in text.split()[:3]] if text else None


def number(value, unit):
    if value is None:
        return ""
    decimals = DECIMALS.get(unit, 2)
    return f"{value:,.{decimals}f}"


def table(rows):
    sections = []
    for r in rows:
        if r["section"] not in sections:
            sections.append(r["section"])
    header = ["case", "median", "min-max", "unit", "ratio", "vs", "goal", "met"]
    lines = []
    for section in sections:
        body = []
        for r in rows:
            if r["section"] != section:
                continue
            spread = ""
            if r.get("min") is not None and r.get("max") is not None:
                spread = f"{number(r['min'], r['unit'])}-{number(r['max'], r['unit'])}"
            met = {True: "yes", False: "NO", None: ""}[r.get("met")]
            body.append([
                r["case"], number(r["median"], r["unit"]), spread, r["unit"],
                f"{r['ratio']:.2f}x" if r.get("ratio") is not None else "",
                r.get("baseline") or "", r.get("goal") or "", met,
            ])
        widths = [max(len(x[i]) for x in body + [header]) for i in range(len(header))]
        right = {1, 2, 4}

        def fmt(cells):
            return "  ".join(c.rjust(w) if i in right else c.ljust(w)
                             for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

        lines += ["", f"== {section}", fmt(header)] + [fmt(b) for b in body]
    return "\n".join(lines)


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    parts_dir, out_dir = sys.argv[1], sys.argv[2]
    names = sorted(f[:-5] for f in os.listdir(parts_dir) if f.endswith(".json")) \
        if os.path.isdir(parts_dir) else []
    names = [n for n in ORDER if n in names] + [n for n in names if n not in ORDER]
    rows = []
    for name in names:
        path = os.path.join(parts_dir, f"{name}.json")
        try:
            part = json.load(open(path))
        except ValueError as err:
            sys.exit(f"bench: {path} is not JSON ({err}): the {name} part wrote it wrong")
        if not isinstance(part, list):
            sys.exit(f"bench: {path} is not a JSON array of rows")
        for r in part:
            missing = [k for k in KEYS if k not in r]
            if missing:
                sys.exit(f"bench: a row of {path} lacks {', '.join(missing)}: {r}")
            if r["met"] is None:
                r["met"] = goal_met(r["goal"], r["median"], r["ratio"])
            rows.append({k: r[k] for k in KEYS})

    stamp = os.environ.get("BENCH_STAMP") or datetime.datetime.now(
        datetime.timezone.utc).strftime("%Y%m%dT%H%M%S")
    sha = os.environ.get("BENCH_COMMIT") or (git("rev-parse", "HEAD") or "").strip() or None
    if os.environ.get("BENCH_DIRTY") in ("true", "false"):
        dirty = os.environ["BENCH_DIRTY"] == "true"
    else:
        status = git("status", "--porcelain")
        dirty = bool(status.strip()) if status is not None else None
    meta = {
        "date": datetime.datetime.strptime(stamp, "%Y%m%dT%H%M%S")
        .replace(tzinfo=datetime.timezone.utc).isoformat().replace("+00:00", "Z"),
        "commit": {"sha": sha, "dirty": dirty},
        "nproc": os.cpu_count(),
        "loadavg_start": loadavg(os.environ.get("BENCH_LOADAVG_START")),
        "loadavg_end": loadavg(open("/proc/loadavg").read()),
        "envoy_version": envoy_version(os.environ.get("BENCH_ENVOY")),
        "rounds": int(os.environ.get("BENCH_ROUNDS", "0")) or None,
        "duration": os.environ.get("BENCH_DURATION"),
        "connections": int(os.environ.get("BENCH_CONNECTIONS", "0")) or None,
    }

    os.makedirs(out_dir, exist_ok=True)
    out = os.path.join(out_dir, f"bench-{stamp}.json")
    with open(out, "w") as f:
        json.dump({"meta": meta, "rows": rows}, f, indent=1)
        f.write("\n")
    shutil.copyfile(out, os.path.join(out_dir, "latest.json"))

    print()
    print(f"== bench {meta['date']}: commit {sha or '?'}"
          f"{' (dirty)' if meta['commit']['dirty'] else ''}, {meta['nproc']} CPUs, "
          f"load {os.environ.get('BENCH_LOADAVG_START', '?')} -> "
          f"{' '.join(str(x) for x in meta['loadavg_end'])}, "
          f"parts: {', '.join(names) or 'none wrote rows'}")
    if rows:
        print(table(rows))
    missed = [f"{r['section']}: {r['case']} ({r['goal']})" for r in rows if r["met"] is False]
    print()
    if missed:
        print("goals not met (measurements, not failures):")
        for m in missed:
            print(f"  {m}")
    print(f"bench: rows in {out} (and {os.path.join(out_dir, 'latest.json')})")


if __name__ == "__main__":
    main()
