"""The documentation's references point at things that exist.

Scanned: ``README.md``, every ``docs/*.md``, ``device_bench/README.md`` and
``android_app/README.md``.

Two kinds of reference are checked:

* **Markdown links** ``[text](target)`` (and images ``![alt](target)``), outside code. ``http://``,
  ``https://`` and ``mailto:`` targets are skipped. Other targets are paths relative to the
  document and must exist. A ``#anchor`` (alone: this document; after a path: that document) must
  be the GitHub slug of one of the target file's headings.
* **Backticked repository paths**: the words of inline code spans and of fenced code blocks
  (split at white space, surrounding ``"'()[],;`` stripped) are candidates, so
  ``python benchmarks/runtimes.py --model NAME`` checks ``benchmarks/runtimes.py``. A word is
  taken as a path when all of these hold:

  1. it is made only of letters, digits and ``_ . - /`` (so placeholders such as ``<singer>``,
     ``{stem}``, ``*.json`` or ``...``, options such as ``host:threads=1`` and calls such as
     ``avg_inference_latency(ms)`` are not paths);
  2. it contains a ``/``, does not start with ``/``, ``./`` or ``~`` (machine paths such as
     ``/tmp/svc`` or ``/data/local/tmp`` are not repository paths), and does not end in ``..``;
  3. its first component names a **source folder** of the repository: a top-level folder
     holding files tracked by git (``configs/``, ``docs/``, ``benchmarks/``...), or, for a
     document in a sub-folder, an entry of that document's own folder (``runner/`` in
     ``device_bench/README.md``). Folders that only hold generated output and are ignored by
     git (``runs/``, ``build/``, ``.venv/``) are not source folders, so run outputs such as
     ``runs/demo/report.html`` are never checked;
  4. it is not what a command writes: the word after an output option (``--out``, ``--output``,
     ``--json``, ``--markdown``, ``--csv``, ``--plot``, ``--out-dir``, ``-o``) or after ``>``.

  Such a path must exist, relative to the repository root (rule 3, first case) or to the
  document's folder (second case); a trailing ``/`` means it must be a folder. Dotted Python
  names (``export.runtime``) and bare file names (``adb.py``) have no ``/`` and are not checked.

Every failure names the document, the line and the missing target. The README is also held to
at most 300 lines: it is the user's manual; measurements and design notes belong in ``docs/``.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README_MAX_LINES = 300

FENCE = re.compile(r"^\s*(```|~~~)")
CODE_SPAN = re.compile(r"(`+)(.+?)(?<!`)\1(?!`)")
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
PATH_WORD = re.compile(r"^[A-Za-z0-9_.\-/]+$")
HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
SKIP_SCHEMES = ("http://", "https://", "mailto:")
GENERATED = {"runs", "build", ".venv", ".git", "node_modules"}
OUTPUT_OPTIONS = {"--out", "--output", "--json", "--markdown", "--csv", "--plot", "--out-dir",
                  "-o", ">", ">>"}


def documents(root: Path = ROOT) -> list[Path]:
    """The documents whose references are checked."""
    docs = [root / "README.md", *sorted((root / "docs").glob("*.md"))]
    docs += [root / "device_bench" / "README.md", root / "android_app" / "README.md"]
    return [d for d in docs if d.is_file()]


def source_folders(root: Path = ROOT) -> set[str]:
    """Top-level folders that hold tracked files (rule 3); without git, the folders on disk
    minus hidden, generated and packaging-output ones."""
    try:
        out = subprocess.run(["git", "-C", str(root), "ls-files"], capture_output=True,
                             text=True, check=True, timeout=60).stdout
        folders = {line.split("/", 1)[0] for line in out.splitlines() if "/" in line}
        if folders:
            return folders
    except (OSError, subprocess.SubprocessError):
        pass
    return {p.name for p in root.iterdir()
            if p.is_dir() and not p.name.startswith(".") and p.name not in GENERATED
            and not p.name.endswith(".egg-info")}


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: markup dropped, lower case, punctuation removed (letters,
    digits, ``_``, ``-`` and spaces kept), spaces turned into hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)   # links keep their text
    text = text.replace("`", "").replace("*", "").strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def split_code(text: str) -> tuple[list[tuple[int, str]], list[tuple[int, str]]]:
    """(prose lines, code lines) as (line number, text); fence lines belong to neither."""
    prose, code, fence = [], [], None
    for n, line in enumerate(text.splitlines(), 1):
        m = FENCE.match(line)
        if m and (fence is None or m.group(1) == fence):
            fence = m.group(1) if fence is None else None
            continue
        (prose if fence is None else code).append((n, line))
    return prose, code


def prose_lines(text: str) -> list[tuple[int, str]]:
    """(line number, line) outside fenced code blocks."""
    return split_code(text)[0]


def code_words(text: str) -> list[tuple[int, str]]:
    """(line number, word) of every inline code span and fenced code line, minus the words a
    command writes (rule 4)."""
    prose, code = split_code(text)
    pieces = [(n, m.group(2)) for n, line in prose for m in CODE_SPAN.finditer(line)]
    out = []
    for n, piece in pieces + code:
        previous = ""
        for raw in piece.split():
            word = raw.strip("\"'()[],;")
            option, eq, _ = word.partition("=")
            if not (previous in OUTPUT_OPTIONS or (eq and option in OUTPUT_OPTIONS)):
                out.append((n, word))
            previous = word
    return sorted(out)


def anchors(path: Path) -> set[str]:
    """The anchors of a markdown file's headings (duplicates numbered -1, -2... as GitHub does)."""
    seen: dict[str, int] = {}
    out = set()
    for _, line in prose_lines(path.read_text(encoding="utf-8")):
        m = HEADING.match(line)
        if not m:
            continue
        base = slug(m.group(2))
        k = seen.get(base, 0)
        out.add(base if k == 0 else f"{base}-{k}")
        seen[base] = k + 1
    return out


def is_repo_path(span: str, first_components: set[str]) -> bool:
    """Rules 1-3 of the module docstring."""
    if not PATH_WORD.match(span) or "/" not in span:
        return False
    if span.startswith(("/", "./", "~")) or span.endswith(".."):
        return False
    return span.split("/", 1)[0] in first_components


def check_links(doc: Path, root: Path) -> list[str]:
    """Dangling markdown links and anchors of one document."""
    problems = []
    rel = doc.relative_to(root)
    for n, line in prose_lines(doc.read_text(encoding="utf-8")):
        line = CODE_SPAN.sub(lambda m: " " * len(m.group(0)), line)
        for m in LINK.finditer(line):
            target = m.group(1)
            if target.startswith(SKIP_SCHEMES):
                continue
            path_part, _, anchor = target.partition("#")
            dest = (doc.parent / path_part).resolve() if path_part else doc
            if not dest.exists():
                problems.append(f"{rel}:{n}: link target {target!r} does not exist")
                continue
            if anchor:
                if dest.is_dir() or dest.suffix.lower() != ".md":
                    problems.append(f"{rel}:{n}: link {target!r} has an anchor but its target "
                                    "is not a markdown file")
                elif anchor.lower() not in anchors(dest):
                    problems.append(f"{rel}:{n}: link {target!r}: no heading with anchor "
                                    f"#{anchor} in {dest.relative_to(root)}")
    return problems


def check_paths(doc: Path, root: Path, folders: set[str]) -> list[str]:
    """Backticked repository paths of one document that do not exist."""
    problems = []
    rel = doc.relative_to(root)
    local = set()
    if doc.parent != root:
        local = {p.name for p in doc.parent.iterdir()}
    for n, word in code_words(doc.read_text(encoding="utf-8")):
        if is_repo_path(word, folders):
            dest, where = root / word, ""
        elif is_repo_path(word, local):
            dest, where = doc.parent / word, f" (in {doc.parent.name}/)"
        else:
            continue
        if not dest.exists() or (word.endswith("/") and not dest.is_dir()):
            problems.append(f"{rel}:{n}: path `{word}` does not exist{where}")
    return problems


def check_document(doc: Path, root: Path = ROOT, folders: set[str] | None = None) -> list[str]:
    folders = source_folders(root) if folders is None else folders
    return check_links(doc, root) + check_paths(doc, root, folders)


@pytest.mark.parametrize("doc", documents(), ids=lambda p: str(p.relative_to(ROOT)))
def test_references_exist(doc: Path) -> None:
    problems = check_document(doc)
    assert not problems, "dangling references:\n" + "\n".join(problems)


def test_scanned_documents() -> None:
    names = {str(d.relative_to(ROOT)) for d in documents()}
    assert {"README.md", "device_bench/README.md", "android_app/README.md"} <= names
    assert any(n.startswith("docs/") for n in names)


def test_readme_is_short() -> None:
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, (
        f"README.md has {len(lines)} lines (at most {README_MAX_LINES}): move measurements to "
        "docs/results.md and design notes to docs/design.md")


def test_planted_dangling_references_fail(tmp_path: Path) -> None:
    """A checker that passes the repository must also catch each kind of fault."""
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "default.yaml").write_text("name: x\n")
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "results.md").write_text("# Results\n\n## Test suite\n")
    (tmp_path / "tool").mkdir()
    (tmp_path / "tool" / "runner").mkdir()
    (tmp_path / "tool" / "README.md").write_text(
        "# Tool\n\nSee `runner/` and `runner/missing.cpp`.\n")
    doc = tmp_path / "README.md"
    doc.write_text(
        "# Manual\n\n"
        "## Good\n"
        "[results](docs/results.md), [suite](docs/results.md#test-suite), [up](#good),\n"
        "[web](https://example.org/nothing), `configs/default.yaml`, `docs/`,\n"
        "`compress run configs/default.yaml --out configs/new.yaml --json=docs/r.json`,\n"
        "`runs/demo/report.html`, `/tmp/x/y`, `RUN/<NN>_<stage>/`, `configs/*.yaml`,\n"
        "`dataset_raw/<singer>/<song>.wav`, `export.runtime`, `host:threads=1`.\n\n"
        "## Bad\n"
        "[design](docs/design.md) and [gone](docs/results.md#no-such-heading) and [self](#nope)\n"
        "and `configs/lhq-svc.yaml` and `docs/results.md/` and `python benchmarks/gone.py -v`.\n\n"
        "```bash\n"
        "compress validate configs/in-fence.yaml  # [fenced](not/checked.md)\n"
        "compress export m --out docs/exported/ > docs/log.txt\n"
        "```\n"
    )
    folders = {"configs", "docs", "tool", "benchmarks"}
    problems = check_document(doc, tmp_path, folders)
    text = "\n".join(problems)
    for bad in ("'docs/design.md'", "#no-such-heading", "#nope", "`configs/lhq-svc.yaml`",
                "`docs/results.md/`", "`benchmarks/gone.py`", "README.md:15: path "
                "`configs/in-fence.yaml`"):
        assert bad in text, f"{bad} not reported:\n{text}"
    assert len(problems) == 7, text

    sub = check_document(tmp_path / "tool" / "README.md", tmp_path, folders)
    assert sub == ["tool/README.md:3: path `runner/missing.cpp` does not exist (in tool/)"]

    # And on a copy of the real README with one dangling link added.
    planted = tmp_path / "docs" / "planted.md"
    planted.write_text((ROOT / "README.md").read_text(encoding="utf-8")
                       + "\nSee [the design](design-notes-gone.md).\n")
    problems = check_links(planted, tmp_path)
    assert any("design-notes-gone.md" in p for p in problems), problems


def test_slug_matches_github() -> None:
    assert slug("`compress run`: teacher → mobile student") == (
        "compress-run-teacher--mobile-student")
    assert slug("Benchmark on a phone (adb)") == "benchmark-on-a-phone-adb"
    assert slug("Runtimes: `lhq-svc-decoder` (16,985,360 parameters)") == (
        "runtimes-lhq-svc-decoder-16985360-parameters")
