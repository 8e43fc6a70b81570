#!/usr/bin/env python3
"""Summarise VSTest TRX files: print each failed test with its message, then the
count line `N passed, M failed[, K skipped]` as the very last line.

Usage: trx-summary.py RESULTS_DIR
Exit status: 0 when at least one test ran and none failed, 1 otherwise.
"""
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

NS = {"t": "http://microsoft.com/schemas/VisualStudio/TeamTest/2010"}
PASSED = {"Passed", "PassedButRunAborted", "Warning"}
SKIPPED = {"NotExecuted", "Inconclusive", "NotRunnable", "Pending", "Disconnected"}
MAX_LINES = 15


def text(node, path):
    found = node.find(path, NS)
    return (found.text or "").strip() if found is not None else ""


def first_lines(value, limit=MAX_LINES):
    lines = value.splitlines()
    if len(lines) > limit:
        lines = lines[:limit] + [f"... ({len(lines) - limit} more lines)"]
    return lines


def main():
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    results = Path(sys.argv[1])
    passed = failed = skipped = 0
    failures = []
    for trx in sorted(results.rglob("*.trx")):
        try:
            root = ET.parse(trx).getroot()
        except ET.ParseError as err:
            print(f"kumo: cannot read {trx}: {err}", file=sys.stderr)
            failed += 1
            failures.append((f"(unreadable result file {trx.name})", str(err), ""))
            continue
        for result in root.iterfind(".//t:Results/t:UnitTestResult", NS):
            outcome = result.get("outcome", "")
            if outcome in PASSED:
                passed += 1
            elif outcome in SKIPPED:
                skipped += 1
            else:  # Failed, Error, Timeout, Aborted, ...
                failed += 1
                name = result.get("testName", "?")
                message = text(result, "t:Output/t:ErrorInfo/t:Message") or f"outcome: {outcome}"
                stack = text(result, "t:Output/t:ErrorInfo/t:StackTrace")
                failures.append((name, message, stack))

    for name, message, stack in failures:
        print(f"FAILED {name}")
        for line in first_lines(message):
            print(f"    {line}")
        for line in first_lines(stack, 6):
            print(f"      {line.strip()}")
    if failures:
        print()
    if passed + failed == 0:
        print("kumo: no test ran")
    summary = f"{passed} passed, {failed} failed"
    if skipped:
        summary += f", {skipped} skipped"
    print(summary, flush=True)
    return 0 if failed == 0 and passed + failed > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
