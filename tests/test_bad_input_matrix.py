"""tests/bad_inputs.md is a published promise: keep it tied to real tests."""

import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[1]
MATRIX = ROOT / "tests" / "bad_inputs.md"
ROW = re.compile(r"^\| (\d+) \| (.+) \| (.+) \| `(tests/[\w/]+\.py)::(\w+)` \|$")


def rows():
    found = []
    for line in MATRIX.read_text().splitlines():
        match = ROW.match(line)
        if match:
            found.append(match.groups())
        else:
            assert not re.match(r"^\| \d+ \|", line), f"malformed row: {line}"
    return found


def test_the_matrix_has_at_least_30_numbered_rows():
    numbers = [int(r[0]) for r in rows()]
    assert len(numbers) >= 30
    assert numbers == list(range(1, len(numbers) + 1))


def test_every_row_names_a_test_that_exists():
    for number, _, _, path, name in rows():
        source = (ROOT / path).read_text()
        assert re.search(rf"^def {name}\(", source, re.M), (
            f"row {number}: {path}::{name} not found")


def test_the_readme_links_the_matrix():
    assert "tests/bad_inputs.md" in (ROOT / "README.md").read_text()
