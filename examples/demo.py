"""`make demo`: a real render job on a 2-node local pool, end to end.

1. builds the demo scene with Blender (examples/scene/, git-ignored),
2. starts Azurite on a free port and uploads the scene and its textures,
3. runs `node-agent local run` on 2 nodes (start task, job prep, 24 frames, job release),
4. downloads the frames from the job's File Conventions container and writes a contact sheet.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml
from PIL import Image

from node_agent.azurite import AzuriteServer
from node_agent.conventions import job_container
from node_agent.redact import Redactor
from node_agent.spec import spec_from_data
from node_agent.storage import BlobStore

ROOT = Path(__file__).resolve().parents[1]
SCENE_DIR = ROOT / "examples" / "scene"
OUT = ROOT / "demo-out"
JOB_ID = "demo-spin"


def build_scene() -> None:
    if (SCENE_DIR / "spin.blend").exists():
        return
    print("demo: building the scene with Blender", flush=True)
    subprocess.run(
        [
            "blender",
            "-b",
            "--python-exit-code",
            "1",
            "-P",
            str(ROOT / "examples" / "make_scene.py"),
            "--",
            str(SCENE_DIR),
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )


def contact_sheet(store: BlobStore, container: str, dest: Path) -> Path:
    frames = sorted(
        (
            b
            for b in store.list_blobs(container)
            if "/$TaskOutput/" in b.name and b.name.endswith(".png")
        ),
        key=lambda b: b.name.rsplit("/", 1)[-1],
    )
    dest.mkdir(parents=True, exist_ok=True)
    images = []
    for b in frames:
        local = dest / b.name.rsplit("/", 1)[-1]
        store.download_file(container, b.name, local, b.size)
        images.append(Image.open(local).convert("RGB"))
    if not images:
        raise SystemExit("demo: no frames were rendered")
    w, h = images[0].size
    cols = 6
    rows = (len(images) + cols - 1) // cols
    sheet = Image.new("RGB", (cols * w, rows * h), "black")
    for i, im in enumerate(images):
        sheet.paste(im, ((i % cols) * w, (i // cols) * h))
    path = OUT / "contact-sheet.png"
    sheet.save(path)
    return path


def main() -> int:
    build_scene()
    OUT.mkdir(exist_ok=True)
    with AzuriteServer(location=None) as azurite:
        spec_doc = yaml.safe_load((ROOT / "examples" / "demo-job.yaml").read_text())
        spec_doc["storage"]["account_url"] = azurite.account_url
        spec_path = OUT / "job.yaml"
        spec_path.write_text(yaml.safe_dump(spec_doc, sort_keys=False))
        spec = spec_from_data(spec_doc)
        store = BlobStore(spec.storage, Redactor())
        store.ensure_container("assets")
        for f in sorted(p for p in SCENE_DIR.rglob("*") if p.is_file()):
            store.upload_file(f, "assets", "spin/" + f.relative_to(SCENE_DIR).as_posix())
        print(f"demo: Azurite on {azurite.account_url}; scene uploaded to assets/spin/", flush=True)
        code = subprocess.call(
            [
                sys.executable,
                "-m",
                "node_agent",
                "local",
                "run",
                str(spec_path),
                "--nodes",
                "2",
                "--slots",
                "1",
                "--workdir",
                str(OUT / "pool"),
                "--fresh",
            ]
        )
        if code != 0:
            print(f"demo: the job failed with exit code {code}", file=sys.stderr)
            return code
        sheet = contact_sheet(store, job_container(JOB_ID), OUT / "frames")
        print(f"demo: frames in {OUT / 'frames'}; contact sheet: {sheet}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
