"""Every relative link and #anchor in README.md and docs/*.md resolves (GitHub's anchor slugs)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]

FENCE = re.compile(r"^\s*(```|~~~)")
HEADING = re.compile(r"^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
HTML_ANCHOR = re.compile(r"""<a\s+(?:name|id)=["']([^"']+)["']""")
INLINE_CODE = re.compile(r"(`+)(.+?)\1")
# [text](target) and ![alt](target); the text may hold `code` but no nested brackets.
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")


def documents() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("**/*.md"))]


def prose_lines(text: str) -> list[str]:
    """The lines outside fenced code blocks."""
    out, fenced = [], False
    for line in text.splitlines():
        if FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            out.append(line)
    return out


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: the rendered text, lower-cased, punctuation dropped
    (letters, digits, '_', '-' and spaces kept), each space a '-'."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # links: their text
    text = INLINE_CODE.sub(lambda m: m.group(2), text)
    text = re.sub(r"<[^>]+>", "", text)  # inline HTML tags
    return re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")


def anchors(text: str) -> set[str]:
    """Every anchor a document offers: heading slugs (duplicates get -1, -2, ...) and <a name/id>."""
    seen: dict[str, int] = {}
    found: set[str] = set()
    for line in prose_lines(text):
        found.update(HTML_ANCHOR.findall(line))
        m = HEADING.match(line)
        if not m:
            continue
        base = slug(m.group(2))
        n = seen.get(base, 0)
        seen[base] = n + 1
        found.add(base if n == 0 else f"{base}-{n}")
    return found


def links(text: str) -> list[str]:
    """Link targets outside code blocks and code spans."""
    out: list[str] = []
    for line in prose_lines(text):
        out += LINK.findall(INLINE_CODE.sub("", line))
    return out


def broken_links(doc: Path) -> list[str]:
    problems = []
    for target in links(doc.read_text()):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.IGNORECASE):  # https:, mailto:, ...
            continue
        path_part, _, fragment = target.partition("#")
        dest = (doc.parent / path_part).resolve() if path_part else doc
        if not dest.exists():
            problems.append(f"{target}: no such file {dest}")
            continue
        if fragment and dest.suffix == ".md" and fragment not in anchors(dest.read_text()):
            problems.append(f"{target}: no heading with anchor #{fragment} in {dest}")
    return problems


@pytest.mark.parametrize("doc", documents(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_and_anchor_resolves(doc: Path) -> None:
    assert broken_links(doc) == []


def test_docs_exist_and_readme_links_each_of_them() -> None:
    readme_links = {t.partition("#")[0] for t in links((ROOT / "README.md").read_text())}
    docs = {f"docs/{p.name}" for p in (ROOT / "docs").glob("*.md")}
    assert docs, "docs/ holds no documentation"
    assert docs <= readme_links, f"not linked from the README: {sorted(docs - readme_links)}"


# ------------------------------------------------------------------ the checker itself


@pytest.mark.parametrize(
    "heading, anchor",
    [
        ("Deploy to OVH", "deploy-to-ovh"),
        ("Security groups *and* host firewall", "security-groups-and-host-firewall"),
        ("Why `target_session_attrs` beats shuffling hosts", "why-target_session_attrs-beats-shuffling-hosts"),
        ("RTO and RPO, by the numbers", "rto-and-rpo-by-the-numbers"),
        ("Benchmark: `bench/failover.py --runs 3`", "benchmark-benchfailoverpy---runs-3"),
        ("CI: preview on pull requests, deploy from main", "ci-preview-on-pull-requests-deploy-from-main"),
        ("The PHP connector's config, from the stack outputs", "the-php-connectors-config-from-the-stack-outputs"),
        ("Day 2", "day-2"),
        ("See [the lab](lab.md)", "see-the-lab"),
    ],
)
def test_slug_follows_github(heading: str, anchor: str) -> None:
    assert slug(heading) == anchor


def test_duplicate_headings_get_numbered_anchors_and_code_is_skipped() -> None:
    text = '# A\n## Notes\n```sh\n# not a heading\n```\n## Notes\n<a name="x"></a>\n'
    assert anchors(text) == {"a", "notes", "notes-1", "x"}


def test_checker_finds_a_missing_file_and_a_missing_anchor(tmp_path: Path) -> None:
    (tmp_path / "other.md").write_text("# Other\n## Real section\n")
    doc = tmp_path / "doc.md"
    doc.write_text(
        "# Doc\n## Here\n"
        "[ok](other.md#real-section) [ok](#here) [web](https://example.com/x#y) ![img](other.md)\n"
        "[gone](missing.md) [bad anchor](other.md#no-such) [bad local](#nowhere)\n"
        "`[in code](ignored.md)`\n```\n[in a fence](ignored.md)\n```\n"
    )
    problems = broken_links(doc)
    assert len(problems) == 3, problems
    assert [p.split(":")[0] for p in problems] == ["missing.md", "other.md#no-such", "#nowhere"]
