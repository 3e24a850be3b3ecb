"""The bench's row format (scripts/bench.sh), shared by the parts that
write rows and the step that merges them:

    {"section": str, "case": str,
     "unit": "req/s"|"ms"|"MiB"|"%"|"bytes"|"us/answer",
     "median": number, "min": number|null, "max": number|null,
     "samples": int, "baseline": str|null (a case of the same section),
     "ratio": number|null (median / the baseline's median),
     "goal": str|null (">= 0.90x" on the ratio, "<= 50 MiB" on the median),
     "met": bool|null}
"""
import re
import statistics

KEYS = ("section", "case", "unit", "median", "min", "max", "samples",
        "baseline", "ratio", "goal", "met")

_GOAL = re.compile(r"\s*(>=|<=|>|<)\s*([0-9.]+)\s*(x?)\b.*")


def goal_met(goal, median, ratio):
    """Whether `goal` holds: "... x" is on the ratio, anything else on the
    median. None when there is no goal or nothing to judge it on."""
    if not goal:
        return None
    m = _GOAL.fullmatch(goal)
    if not m:
        return None
    op, number, on_ratio = m.group(1), float(m.group(2)), m.group(3) == "x"
    value = ratio if on_ratio else median
    if value is None:
        return None
    return {">=": value >= number, "<=": value <= number,
            ">": value > number, "<": value < number}[op]


def row(section, case, unit, samples, baseline=None, baseline_samples=None, goal=None):
    """A row from raw samples: median, min, max; the ratio of the medians
    when there is a baseline."""
    med = statistics.median(samples)
    ratio = None
    if baseline is not None and baseline_samples:
        base = statistics.median(baseline_samples)
        ratio = round(med / base, 4) if base else None
    return {
        "section": section,
        "case": case,
        "unit": unit,
        "median": round(med, 3),
        "min": round(min(samples), 3),
        "max": round(max(samples), 3),
        "samples": len(samples),
        "baseline": baseline,
        "ratio": ratio,
        "goal": goal,
        "met": goal_met(goal, med, ratio),
    }
