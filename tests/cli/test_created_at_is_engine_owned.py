"""``created_at`` in a story file is the engine's: a fresh clone's rebuild reads it from the
file, so a hand edit would make clones disagree (the order of ``storyflow next``, cycle
times). ``check`` reports it as field drift and ``sync`` reverts it (PROJECTION_EDITED, a
warning), comparing at the file's precision: whole seconds, while the database keeps
microseconds. Through the executable, as a person runs it."""

from __future__ import annotations

import re
from pathlib import Path

from tests.cli.conftest import Seeded

EDITED = "2020-01-01T00:00:00Z"


def created_at_line(path: Path) -> tuple[int, str]:
    lines = path.read_text(encoding="utf-8").splitlines()
    (found,) = [(n, line) for n, line in enumerate(lines, 1) if line.startswith("created_at:")]
    return found


def set_created_at(path: Path, value: str) -> None:
    text = path.read_text(encoding="utf-8")
    path.write_text(
        re.sub(r"(?m)^created_at: .*$", f"created_at: '{value}'", text), encoding="utf-8"
    )


def test_a_hand_edited_created_at_is_drift_and_sync_reverts_it(seeded: Seeded) -> None:
    ws, rel = seeded.ws, seeded.story_file("FLOW-002")
    path = ws.root / rel
    assert ws.run("check").code == 0  # the database's microseconds are not drift
    _, rendered = created_at_line(path)
    set_created_at(path, EDITED)

    checked = ws.run("check", "--json")
    assert checked.code == 3, checked
    (finding,) = checked.json["findings"]
    assert (finding["code"], finding["file"], finding["story"]) == (
        "CHECK_FIELD_DRIFT",
        rel,
        "FLOW-002",
    )
    assert finding["line"] == created_at_line(path)[0]
    assert finding["message"].startswith(f"created_at is {EDITED} in the file, "), finding
    assert "storyflow story render FLOW-002" in finding["hint"], finding

    synced = ws.run("sync", "--json")
    assert synced.code == 0, synced
    (problem,) = synced.json["problems"]
    assert (problem["code"], problem["level"], problem["story"]) == (
        "PROJECTION_EDITED",
        "warning",
        "FLOW-002",
    )
    assert "created_at" in problem["message"], problem
    assert created_at_line(path)[1] == rendered
    assert ws.run("check").code == 0
    again = ws.run("sync", "--json")
    assert again.code == 0 and again.json["problems"] == [], again


def test_the_same_instant_written_otherwise_is_not_an_edit(seeded: Seeded) -> None:
    """Compared as instants at whole seconds: +00:00 for Z, or another offset, is the same."""
    ws, rel = seeded.ws, seeded.story_file("FLOW-002")
    path = ws.root / rel
    _, rendered = created_at_line(path)
    utc = rendered.split("'")[1]
    assert utc.endswith("Z")
    hour = int(utc[11:13])
    shifted = f"{utc[:11]}{(hour + 2) % 24:02d}{utc[13:19]}+02:00"
    if (hour + 2) >= 24:  # the date would change too: keep to +00:00 then
        shifted = utc.replace("Z", "+00:00")
    set_created_at(path, shifted)
    checked = ws.run("check", "--json")
    assert checked.code == 0, checked
    synced = ws.run("sync", "--json")
    assert synced.code == 0 and synced.json["problems"] == [], synced
