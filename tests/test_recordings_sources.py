"""Every recording in the repository has its source row, and every source row its file."""

from __future__ import annotations

import re

from tests.replay import RECORDINGS_DIR

SOURCES = RECORDINGS_DIR / "SOURCES.md"
ROW = re.compile(r"^\| `([^`]+)` \| (\d+) \| ([\w.-]+/[\w.-]+) \| `[^`]+` \| `[0-9a-f]{12}` \|")


def _rows() -> dict[str, int]:
    rows = {}
    for line in SOURCES.read_text().splitlines():
        found = ROW.match(line)
        if found:
            rows[found.group(1)] = int(found.group(2))
    return rows


def _recordings() -> dict[str, int]:
    return {
        str(path.relative_to(RECORDINGS_DIR)): path.stat().st_size
        for path in RECORDINGS_DIR.rglob("*")
        if path.is_file() and path != SOURCES and "LICENSES" not in path.parts
    }


def test_sources_name_each_recording_with_its_size() -> None:
    assert len(_recordings()) == 51
    assert _rows() == _recordings()


def test_each_licence_named_in_sources_has_its_text() -> None:
    linked = set(re.findall(r"\(LICENSES/([\w.-]+)\)", SOURCES.read_text()))

    assert linked == {p.name for p in (RECORDINGS_DIR / "LICENSES").iterdir()}
    assert all((RECORDINGS_DIR / "LICENSES" / name).stat().st_size > 1000 for name in linked)
