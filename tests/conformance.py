#!/usr/bin/env python3
"""Runs the ported TCK proxy checks (tests/tck.rs), ignored ones included,
and writes the conformance table into README.md between the
`<!-- conformance:begin -->` / `<!-- conformance:end -->` markers. The table
is generated from this run's results, never typed by hand.

usage: tests/conformance.py   (from the repository root)
"""
import re
import subprocess
import sys

GROUPS = {
    "": "ProxyTCK",
    "action_tck": "ActionTCK",
    "entity_tck::value": "EntityTCK (value entity)",
    "entity_tck::eventsourced": "EventSourcedEntityTCK",
    "crdt_tck": "CrdtEntityTCK",
    "eventing_tck": "EventingTCK",
}


def main():
    run = subprocess.run(
        ["cargo", "nextest", "run", "--test", "tck", "--run-ignored", "all", "--no-fail-fast"],
        capture_output=True, text=True)
    output = run.stdout + run.stderr
    results = {}
    for line in output.splitlines():
        m = re.match(r"\s*(PASS|FAIL|TIMEOUT|SIGTERM|SIGSEGV|SIGABRT)\s+\[.*?\]\s+\(.*?\)\s+massa::tck\s+(\S+)", line)
        if m:
            results[m.group(2)] = m.group(1) == "PASS"
    if not results:
        sys.exit("no test results parsed:\n" + output[-2000:])
    ignored = set()
    source = open("tests/tck.rs").read()
    module = []
    pending_ignore = None
    for line in source.splitlines():
        if m := re.match(r"^(\s*)mod (\w+) \{", line):
            depth = len(m.group(1)) // 4
            module = module[:depth] + [m.group(2)]
        if m := re.match(r'\s*#\[ignore = "(.*)"\]', line):
            pending_ignore = m.group(1)
        if m := re.match(r"^(\s*)fn (\w+)\(\)", line):
            depth = len(m.group(1)) // 4
            name = "::".join(module[:depth] + [m.group(2)])
            if pending_ignore:
                ignored.add((name, pending_ignore))
            pending_ignore = None
    reasons = dict(ignored)
    rows = ["| TCK group | check | status |", "|---|---|---|"]
    passed = 0
    for name, ok in sorted(results.items(), key=lambda kv: (list(GROUPS).index(kv[0].rsplit("::", 1)[0]) if "::" in kv[0] else 0, kv[0])):
        group = GROUPS.get(name.rsplit("::", 1)[0] if "::" in name else "", "?")
        check = name.rsplit("::", 1)[-1].replace("_", " ")
        if ok:
            passed += 1
            status = "pass" + (" (ignored by default)" if name in reasons else "")
        else:
            status = "not yet: " + reasons.get(name, "FAILS")
        rows.append(f"| {group} | {check} | {status} |")
    rows.append("")
    rows.append(f"{passed} of {len(results)} checks pass (`tests/conformance.py`, generated from the test run).")
    table = "\n".join(rows)
    readme = open("README.md").read()
    begin, end = "<!-- conformance:begin -->", "<!-- conformance:end -->"
    if begin not in readme:
        sys.exit("README.md has no conformance markers")
    head, rest = readme.split(begin, 1)
    _, tail = rest.split(end, 1)
    open("README.md", "w").write(f"{head}{begin}\n{table}\n{end}{tail}")
    print(table)


if __name__ == "__main__":
    main()
