#!/usr/bin/env python3
"""Stand-in renderer for TD-template tests (not a real renderer): records its argv and
environment as JSON in <out_dir>/../standin.json, writes one PNG per frame given.

Usage: envdump.py <out_dir> <frame>... [-- <any args to record>]
"""

import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import png  # noqa: E402

out = Path(sys.argv[1])
out.mkdir(parents=True, exist_ok=True)
(out.parent / "standin.json").write_text(json.dumps({"argv": sys.argv, "env": dict(os.environ)}))
for a in sys.argv[2:]:
    if a == "--":
        break
    (out / f"frame_{int(a):04d}.png").write_bytes(png())
print("entitlement:", os.environ.get("AZ_BATCH_SOFTWARE_ENTITLEMENT_TOKEN"), flush=True)
print("Fra:1 Mem:1M | Sample 1/1", flush=True)
