"""Rewriting one generated block of README.md, between an HTML-comment pair of markers.

Both `make chaos` and `make bench` keep their latest results in the README this way,
so the figures there are always the output of a run, never typed by hand.
"""

import re
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def markers(name: str) -> tuple[str, str]:
    return f"<!-- {name}:start -->", f"<!-- {name}:end -->"


def replace_between(text: str, name: str, content: str) -> str:
    """`text` with everything between the markers called `name` set to `content`."""
    start, end = markers(name)
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.DOTALL)
    if not pattern.search(text):
        raise SystemExit(f"{start} ... {end} not found in {README}")

    replacement = f"{start}\n{content}{end}"
    return pattern.sub(lambda _: replacement, text, count=1)


def rewrite_readme(blocks: dict[str, str]) -> None:
    """Set each named block of README.md; writes nothing if a marker is missing."""
    text = README.read_text(encoding="utf-8")
    for name, content in blocks.items():
        text = replace_between(text, name, content)
    README.write_text(text, encoding="utf-8")
