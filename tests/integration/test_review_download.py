"""`job download` against hostile blob names and a DEST someone else has written in: every
frame and log goes through safepath, a link planted in DEST (its `.node-agent-partial/`, its
`logs/`, a frame's own name) is never followed, and one bad name does not stop the rest.
Real Azurite, `node-agent job download` as a process."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import pytest
from helpers import make_spec_doc, run_agent, seed

from node_agent.azurite import AzuriteServer
from node_agent.conventions import job_container
from node_agent.storage import BlobStore

FRAME = b"\x89PNG\r\n\x1a\n" + b"frame-one" * 100


def _job(
    tmp_path: Path, azurite: AzuriteServer, store: BlobStore, job: str, blobs: dict[str, bytes]
) -> list[str]:
    """The args of `job download <job> DEST --local <empty pool> --spec <spec>` with `blobs`
    in the job's container (File Conventions: job-<job>)."""
    doc = make_spec_doc(azurite.account_url)
    doc["job_id"] = job
    spec = tmp_path / "job.json"
    spec.write_text(json.dumps(doc))
    seed(store, job_container(job), blobs)
    pool = tmp_path / "pool"
    pool.mkdir(exist_ok=True)
    return [
        "job",
        "download",
        job,
        str(tmp_path / "dest"),
        "--local",
        str(pool),
        "--spec",
        str(spec),
    ]


def _files(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in folder.rglob("*")
        if p.is_file() and not p.is_symlink()
    }


def test_a_link_planted_as_the_partial_folder_is_not_followed(
    tmp_path: Path, azurite: AzuriteServer, store: BlobStore
) -> None:
    """DEST/.node-agent-partial -> a folder outside: the clean-up of half-written files never
    deletes there, and no download is written there."""
    args = _job(tmp_path, azurite, store, "rv-partial", {"t1/$TaskOutput/frame_0001.png": FRAME})
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep.bin").write_bytes(b"not yours")
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / ".node-agent-partial").symlink_to(victim)
    before = _files(victim)
    r = run_agent(args)
    assert r.returncode == 0, r.stdout + r.stderr
    assert _files(victim) == before  # nothing deleted, nothing written outside DEST
    assert (dest / "frame_0001.png").read_bytes() == FRAME
    assert not (dest / ".node-agent-partial").is_symlink()


def test_a_link_planted_in_the_logs_folder_is_not_followed(
    tmp_path: Path, azurite: AzuriteServer, store: BlobStore
) -> None:
    """DEST/logs and DEST/logs/<task> -> folders outside: --logs writes into DEST only."""
    args = _job(
        tmp_path,
        azurite,
        store,
        "rv-logs",
        {
            "t1/$TaskOutput/frame_0001.png": FRAME,
            "t1/$TaskLog/stderr.txt": b"task one stderr\n",
            "t2/$TaskLog/stderr.txt": b"task two stderr\n",
        },
    )
    outside_a, outside_b = tmp_path / "outside-a", tmp_path / "outside-b"
    outside_a.mkdir()
    outside_b.mkdir()
    dest = tmp_path / "dest"
    (dest / "logs").mkdir(parents=True)
    (dest / "logs" / "t1").symlink_to(outside_a)
    r = run_agent([*args, "--logs"])
    assert r.returncode == 0, r.stdout + r.stderr
    assert _files(outside_a) == {}
    assert (dest / "logs" / "t1" / "stderr.txt").read_bytes() == b"task one stderr\n"
    # the whole logs folder a link: the same
    dest2 = tmp_path / "dest2"
    dest2.mkdir()
    (dest2 / "logs").symlink_to(outside_b)
    args2 = [*args[:3], str(dest2), *args[4:]]
    r = run_agent([*args2, "--logs"])
    assert r.returncode == 0, r.stdout + r.stderr
    assert _files(outside_b) == {}
    assert (dest2 / "logs" / "t2" / "stderr.txt").read_bytes() == b"task two stderr\n"


def test_a_frame_name_that_is_a_planted_link_is_replaced_not_trusted(
    tmp_path: Path, azurite: AzuriteServer, store: BlobStore
) -> None:
    """DEST/frame_0001.png a link to a file elsewhere with the same bytes: not 'already
    there', the frame is written as a real file and the link's target is untouched."""
    args = _job(tmp_path, azurite, store, "rv-framelink", {"t1/$TaskOutput/frame_0001.png": FRAME})
    elsewhere = tmp_path / "elsewhere.png"
    elsewhere.write_bytes(FRAME)
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "frame_0001.png").symlink_to(elsewhere)
    r = run_agent(args)
    assert r.returncode == 0, r.stdout + r.stderr
    assert not (dest / "frame_0001.png").is_symlink()
    assert (dest / "frame_0001.png").read_bytes() == FRAME
    assert elsewhere.read_bytes() == FRAME


@pytest.mark.parametrize(
    "bad",
    [
        "t9/$TaskOutput/..\\..\\escape.png",  # backslash separators: '..' components
        "t9/$TaskOutput/C:evil.png",  # a drive letter
        "t9/$TaskOutput/\u2024\u2024",  # one dot leader twice: a look-alike of '..'
        "t9/$TaskOutput/.node-agent-download.json",  # the download's own record
        "t9/$TaskOutput/.node-agent-partial",  # its folder of half-written files
    ],
)
def test_a_hostile_frame_name_is_refused_and_the_rest_is_downloaded(
    tmp_path: Path, azurite: AzuriteServer, store: BlobStore, bad: str
) -> None:
    """One task's renderer named a file to leave DEST or to take the download's own files:
    that blob is refused by name (exit 5, after the others), every other frame arrives and
    nothing is written outside DEST."""
    job = "rv-name-" + hashlib.sha1(bad.encode()).hexdigest()[:8]
    args = _job(
        tmp_path,
        azurite,
        store,
        job,
        {
            "t1/$TaskOutput/frame_0001.png": FRAME,
            bad: b"hostile",
            "t3/$TaskOutput/frame_0003.png": FRAME + b"3",
        },
    )
    before = {p.name for p in tmp_path.iterdir()}
    r = run_agent(args)
    assert r.returncode == 5, r.stdout + r.stderr
    assert "refused" in r.stderr and "t9/$TaskOutput/" in r.stderr, r.stderr
    dest = tmp_path / "dest"
    assert (dest / "frame_0001.png").read_bytes() == FRAME
    assert (dest / "frame_0003.png").read_bytes() == FRAME + b"3"
    assert {p.name for p in tmp_path.iterdir()} == before | {"dest"}  # nothing beside DEST
    assert b"hostile" not in b"".join(
        p.read_bytes()
        for p in dest.rglob("*")
        if p.is_file() and p.name != ".node-agent-download.json"
    )
    # the download's record is still its own (a JSON object of the frames written)
    record = json.loads((dest / ".node-agent-download.json").read_text())
    assert set(record) == {"frame_0001.png", "frame_0003.png"}


def test_a_damaged_download_record_is_not_a_crash(
    tmp_path: Path, azurite: AzuriteServer, store: BlobStore
) -> None:
    """DEST/.node-agent-download.json that parses but is not the record (a list, entries
    that are not objects): treated as no record, the frames are checked by their bytes."""
    args = _job(tmp_path, azurite, store, "rv-record", {"t1/$TaskOutput/frame_0001.png": FRAME})
    dest = tmp_path / "dest"
    dest.mkdir()
    for damaged in ("[1, 2]", '{"frame_0001.png": "x"}', '"text"'):
        (dest / ".node-agent-download.json").write_text(damaged)
        r = run_agent(args)
        assert r.returncode == 0, damaged + r.stdout + r.stderr
        assert (dest / "frame_0001.png").read_bytes() == FRAME


def test_a_frame_overwritten_during_the_download_is_fetched_again_not_fatal(
    tmp_path: Path, azurite: AzuriteServer, store: BlobStore
) -> None:
    """A retried task uploads its frame again while a download (--follow, or a second TD)
    reads it: the bytes then match the new version, not the listing's Content-MD5. That
    frame is fetched again at its new version; the other frames still arrive."""
    import threading

    from helpers.proxy import StorageProxy

    job = "rv-changed"
    container = job_container(job)
    v1, v2 = FRAME + b"v1", FRAME + b"version two"
    seed(
        store,
        container,
        {"t1/$TaskOutput/frame_0001.png": v1, "t2/$TaskOutput/frame_0002.png": FRAME},
    )
    done = threading.Event()

    def before(method: str, path: str, headers: dict[str, str]) -> None:
        if method == "GET" and path.endswith("frame_0001.png") and not done.is_set():
            done.set()
            seed(store, container, {"t1/$TaskOutput/frame_0001.png": v2})

    proxy = StorageProxy(azurite.account_url, before)
    try:
        doc = make_spec_doc(proxy.url)
        doc["job_id"] = job
        spec = tmp_path / "job.json"
        spec.write_text(json.dumps(doc))
        (tmp_path / "pool").mkdir()
        dest = tmp_path / "dest"
        r = run_agent(
            [
                "job",
                "download",
                job,
                str(dest),
                "--local",
                str(tmp_path / "pool"),
                "--spec",
                str(spec),
            ]
        )
    finally:
        proxy.close()
    assert done.is_set()
    assert r.returncode == 0, r.stdout + r.stderr
    assert (dest / "frame_0001.png").read_bytes() == v2
    assert (dest / "frame_0002.png").read_bytes() == FRAME
    assert "changed during the download" in r.stdout, r.stdout


def test_two_tasks_uploading_one_file_name_is_said(
    tmp_path: Path, azurite: AzuriteServer, store: BlobStore
) -> None:
    """An output pattern without the frame number: every task uploads `render.png` and a
    flat folder holds one. The download keeps the newest and says how many it left out."""
    args = _job(
        tmp_path,
        azurite,
        store,
        "rv-collide",
        {"t1/$TaskOutput/render.png": FRAME + b"1"},
    )
    time.sleep(1.1)  # Last-Modified has a one-second resolution
    seed(store, job_container("rv-collide"), {"t2/$TaskOutput/render.png": FRAME + b"2"})
    r = run_agent(args)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "render.png" in r.stdout and "2 blobs" in r.stdout, r.stdout
    assert (tmp_path / "dest" / "render.png").read_bytes() == FRAME + b"2"


def test_dest_that_is_a_file_is_a_usage_error(
    tmp_path: Path, azurite: AzuriteServer, store: BlobStore
) -> None:
    """A clumsy DEST (an existing file, e.g. a frame's name typed for the folder)."""
    args = _job(tmp_path, azurite, store, "rv-destfile", {"t1/$TaskOutput/frame_0001.png": FRAME})
    (tmp_path / "dest").write_bytes(b"my notes")
    r = run_agent(args)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "internal error" not in r.stderr and "is not a folder" in r.stderr, r.stderr
    assert (tmp_path / "dest").read_bytes() == b"my notes"


@pytest.mark.parametrize(
    "other",
    ["t2/$TaskOutput/FRAME_0001.png", "t2/$TaskOutput/frame_0001.PNG", "t2/$TaskOutput/ﬁle.png"],
)
def test_frame_names_differing_only_in_case_are_refused_not_overwritten(
    tmp_path: Path, azurite: AzuriteServer, store: BlobStore, other: str
) -> None:
    """On a case-insensitive workstation (macOS, Windows: the TD's) `frame_0001.png` and
    `FRAME_0001.png` are one file: the second would silently overwrite the first. The name
    that sorts first is downloaded, the other refused by name (exit 5), on every platform
    (DEST may be such a folder on any). A compatibility form (`ﬁle.png` for `file.png`,
    which macOS's and Windows' name handling may fold) is the same case."""
    first = "t1/$TaskOutput/frame_0001.png" if "ﬁ" not in other else "t1/$TaskOutput/file.png"
    job = "rv-case-" + hashlib.sha1(other.encode()).hexdigest()[:8]
    args = _job(
        tmp_path,
        azurite,
        store,
        job,
        {first: FRAME, other: b"the other task's frame", "t3/$TaskOutput/f3.png": FRAME + b"3"},
    )
    # the name that sorts first is kept (stable from run to run), the other refused
    kept, refused = sorted([first, other], key=lambda b: b.rsplit("/", 1)[1])
    r = run_agent(args)
    assert r.returncode == 5, r.stdout + r.stderr
    assert f"'{refused}'" in r.stderr and "case-insensitive" in r.stderr, r.stderr
    assert "Traceback" not in r.stdout + r.stderr
    dest = tmp_path / "dest"
    names = sorted(p.name for p in dest.iterdir() if not p.name.startswith(".node-agent"))
    assert names == sorted([kept.rsplit("/", 1)[1], "f3.png"]), names
    blobs = {first: FRAME, other: b"the other task's frame"}
    assert (dest / kept.rsplit("/", 1)[1]).read_bytes() == blobs[kept]
    # a second run is stable: the same refusal, the kept frame not fetched again
    again = run_agent(args)
    assert again.returncode == 5, again.stdout + again.stderr
    assert "2 already there and identical" in again.stdout, again.stdout
    assert (dest / kept.rsplit("/", 1)[1]).read_bytes() == blobs[kept]
