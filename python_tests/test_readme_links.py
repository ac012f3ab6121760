"""The links of the README and of the pages under docs/ resolve: every in-page link names a heading, every
relative link a file of the repository, every page#heading link a heading of that page (a heading renamed after
a new measurement, or a figure or section moved, would break them)."""
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


DOCS = ["README.md", *sorted(os.path.relpath(os.path.join(ROOT, "docs", f), ROOT)
                            for f in os.listdir(os.path.join(ROOT, "docs")) if f.endswith(".md"))]


def read(path):
    with open(os.path.join(ROOT, path), encoding="utf-8") as fh:
        return fh.read()


def test_readme_links_resolve():
    """Every link of the README and of the pages under docs/ it leads to: an in-page anchor that names a
    heading, a relative file that exists (from the page's own folder), and a page#anchor whose page has it."""
    assert "docs/performance.md" in DOCS and "docs/results.md" in DOCS and "docs/fused_op.md" in DOCS
    assert any(t.startswith("#") for t in links(read("README.md"))), "the README's contents list is gone"
    for doc in DOCS:
        text = read(doc)
        found, folder = links(text), os.path.dirname(doc)
        broken = [t for t in found if t.startswith("#") and t[1:] not in anchors(text)]
        files = [t for t in found if not t.startswith(("#", "http://", "https://"))]
        missing = [t for t in files if not os.path.exists(os.path.join(ROOT, folder, t.split("#")[0]))]
        assert not broken, f"{doc} links to headings it does not have: {broken}"
        assert not missing, f"{doc} links to files the repository does not have: {missing}"
        elsewhere = [t for t in files if "#" in t and t.split("#")[0].endswith(".md")
                     and t.split("#")[1] not in anchors(read(os.path.normpath(os.path.join(folder, t.split("#")[0]))))]
        assert not elsewhere, f"{doc} links to headings other pages do not have: {elsewhere}"
