"""runtime.write_atomic: the one way node_agent replaces a small file (records, specs,
resource files, the download record) never writes through a link planted beside it."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from node_agent.runtime import write_atomic


def test_a_link_planted_at_the_old_guessable_temporary_name_is_not_followed(
    tmp_path: Path,
) -> None:
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    target = tmp_path / "dest" / "record.json"
    target.parent.mkdir()
    # the name the temporary file used to have: .<name>.<pid>.tmp
    (target.parent / f".{target.name}.{os.getpid()}.tmp").symlink_to(victim)
    write_atomic(target, b'{"ok": true}', mode=0o600)
    assert victim.read_bytes() == b"precious"
    assert target.read_bytes() == b'{"ok": true}'
    st = target.lstat()
    assert stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600
    leftovers = [p.name for p in target.parent.iterdir() if p.name.endswith(".tmp")]
    assert leftovers == [f".{target.name}.{os.getpid()}.tmp"]  # the planted link, untouched


def test_a_link_at_the_destination_is_replaced_not_written_through(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    target = tmp_path / "spec.json"
    target.symlink_to(victim)
    write_atomic(target, b"new")
    assert victim.read_bytes() == b"precious"
    assert not target.is_symlink() and target.read_bytes() == b"new"
