"""Stand-in renderer for local-pool tests (not a real renderer).

Usage: pool_test_renderer.py <output_dir> <frames> <state_dir> <fail_once_task> <task_id>

Writes one small file per frame as `frame_####.png` (bytes, not a real image) and
records each frame it rendered in <state_dir>/rendered.txt. If <task_id> equals
<fail_once_task>, the first attempt exits 3 before writing anything (a flaky task).
"""

import os
import sys

out, frames, state, fail_once, task = sys.argv[1:6]
os.makedirs(out, exist_ok=True)
marker = os.path.join(state, f"failed-once-{task}")
if task == fail_once and not os.path.exists(marker):
    open(marker, "w").close()
    print(f"stand-in: failing {task} on purpose (first attempt)", file=sys.stderr)
    sys.exit(3)
nums = []
for part in frames.split(","):
    if "-" in part:
        a, b = part.split("-")
        nums += range(int(a), int(b) + 1)
    else:
        nums.append(int(part))
for n in nums:
    with open(os.path.join(out, f"frame_{n:04d}.png"), "wb") as fh:
        fh.write(b"frame %d\n" % n)
    with open(os.path.join(state, "rendered.txt"), "a") as fh:
        fh.write(f"{n} {os.environ['AZ_BATCH_NODE_ID']} {task}\n")
    print(f"Saved: '{out}/frame_{n:04d}.png'")
