"""The README's links resolve: every in-page link names a heading, every relative link a file of
the repository (a heading renamed after a new measurement, or a figure moved, would break them)."""
import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LINK = re.compile(r"\]\(([^)\s]+)\)")
INLINE_CODE = re.compile(r"`[^`]*`")


def github_anchor(heading):
    """The fragment GitHub gives a Markdown heading: lower case, punctuation dropped (letters,
    digits, '_' and '-' stay), each space a '-'."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def prose_lines(text):
    """The lines of a Markdown text outside fenced code blocks."""
    fenced = False
    for line in text.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced:
            yield line


def anchors(text):
    """Every heading's anchor, a repeated one with GitHub's -1, -2, ... suffixes."""
    seen, out = {}, set()
    for line in prose_lines(text):
        heading = re.match(r"#{1,6} (.+)", line)
        if heading:
            base = github_anchor(heading.group(1))
            out.add(base if base not in seen else f"{base}-{seen[base]}")
            seen[base] = seen.get(base, 0) + 1
    return out


def links(text):
    """Link targets outside code: fenced blocks and inline `code` spans (which GitHub shows as typed)."""
    return [m.group(1) for line in prose_lines(text) for m in LINK.finditer(INLINE_CODE.sub("", line))]


def test_anchor_rule():
    assert github_anchor("AFNM op, CPU (float32, training mode, forward + backward)") == \
        "afnm-op-cpu-float32-training-mode-forward--backward"
    assert github_anchor("Does AFNM's gate adapt?") == "does-afnms-gate-adapt"
    assert anchors("## A\n```\n## B\n```\n## A\n") == {"a", "a-1"}
    assert links("[a](#a) `x[1](#b)` [c](d.md)\n```\n[e](#e)\n```\n") == ["#a", "d.md"]


def test_readme_links_resolve():
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as fh:
        text = fh.read()
    found, targets = links(text), anchors(text)
    assert any(t.startswith("#") for t in found), "the README's contents list is gone"
    broken = [t for t in found if t.startswith("#") and t[1:] not in targets]
    missing = [t for t in found if not t.startswith(("#", "http://", "https://"))
               and not os.path.exists(os.path.join(ROOT, t.split("#")[0]))]
    assert not broken, f"README links to headings it does not have: {broken}"
    assert not missing, f"README links to files the repository does not have: {missing}"
