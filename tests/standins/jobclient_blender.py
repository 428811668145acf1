#!/usr/bin/env python3
"""Stand-in Blender for the job client's tests: fails some tasks on purpose, else runs the
real `blender` with the same arguments (real frames).

It reads `jobclient_plan.json` beside itself: {"state": dir, "fail_once": [task ids],
"fail_always": [task ids]}. A task in fail_once fails its first attempt (a marker in
state/), one in fail_always fails every attempt; both print one reason line on stderr and
exit 1 before rendering anything.
"""

import json
import os
import sys

here = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(here, "jobclient_plan.json"), encoding="utf-8") as fh:
    plan = json.load(fh)
task = os.environ.get("AZ_BATCH_TASK_ID", "")
if "--version" not in sys.argv and task:
    marker = os.path.join(plan["state"], "failed-once-" + task)
    if task in plan.get("fail_always", []):
        print(f"stand-in: {task} fails on purpose (every attempt)", file=sys.stderr)
        sys.exit(1)
    if task in plan.get("fail_once", []) and not os.path.exists(marker):
        open(marker, "w").close()
        print(f"stand-in: {task} fails on purpose (first attempt)", file=sys.stderr)
        sys.exit(1)
if task and "-f" in sys.argv:  # what this task renders, for the tests to count
    with open(os.path.join(plan["state"], "rendered.txt"), "a", encoding="utf-8") as fh:
        fh.write(f"{task} {sys.argv[sys.argv.index('-f') + 1]}\n")
os.execvp("blender", ["blender", *sys.argv[1:]])
