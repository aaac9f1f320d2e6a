#!/usr/bin/env python3
"""Records a benchmark's figures in its results file (bench/results/NAME.json).

    record.py FILE start TITLE [KEY=VALUE ...]   begin afresh: title, date, commit, parameters
    record.py FILE figure ID UNIT LABEL V...      one figure from its runs: median, min, max, n
    record.py FILE note TEXT                      something a reader of the results must know
    record.py FILE file KEY PATH                  a file made by the run (a chart, say)

bench/report.py merges the files into bench/results/latest.json and bench/RESULTS.md.
"""

import datetime
import json
import os
import statistics
import subprocess
import sys


def commit(repo):
    """The checked-out commit, with -dirty when the tree has changes other than the results
    (which the benchmarks themselves rewrite as they go)."""
    def git(*args):
        return subprocess.run(["git", "-C", repo, *args],
                              capture_output=True, text=True, check=True).stdout.strip()
    try:
        head = git("rev-parse", "--short", "HEAD")
        changed = git("status", "--porcelain", "--", ".",
                      ":(exclude)bench/results", ":(exclude)bench/RESULTS.md")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("-dirty" if changed else "")


def main(argv):
    if len(argv) < 3:
        sys.exit(__doc__)
    path, command, args = argv[1], argv[2], argv[3:]
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if command == "start":
        if not args:
            sys.exit("record.py: start needs a title")
        data = {
            "bench": os.path.splitext(os.path.basename(path))[0],
            "title": args[0],
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "commit": commit(repo),
            "params": dict(a.split("=", 1) for a in args[1:]),
            "figures": {},
            "notes": [],
            "files": {},
        }
    else:
        with open(path) as f:
            data = json.load(f)
        if command == "figure":
            if len(args) < 4:
                sys.exit("record.py: figure needs ID UNIT LABEL and at least one value")
            ident, unit, label = args[:3]
            runs = [float(v) for v in args[3:]]
            data["figures"][ident] = {
                "label": label,
                "unit": unit,
                "median": statistics.median(runs),
                "min": min(runs),
                "max": max(runs),
                "n": len(runs),
                "runs": runs,
            }
        elif command == "note" and len(args) == 1:
            data["notes"].append(args[0])
        elif command == "file" and len(args) == 2:
            data["files"][args[0]] = os.path.relpath(os.path.abspath(args[1]), repo)
        else:
            sys.exit(f"record.py: bad command: {' '.join(argv[2:])}")
    tmp = path + ".new"
    with open(tmp, "w") as f:
        json.dump(data, f, indent=1)
        f.write("\n")
    os.replace(tmp, path)


if __name__ == "__main__":
    main(sys.argv)
