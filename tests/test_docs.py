"""The manual (README.md and docs/) cannot drift from the code.

* Every ``eznas-store`` command line in a shell block of the manual parses against the
  command line itself (the subcommand exists, every option exists, values convert, required
  options are there); in ``docs/results.md``, a lab notebook whose commands keep their
  placeholders (``--seed S``), the options must exist. Inline ``eznas-store ...`` spans: the
  subcommand and every option exist.
* Every block marked ``<!-- runs: tiny -->`` runs as written, in order per page, in a copy
  of a folder holding a small stand-in for what ``eznas-store demo`` leaves (``demo-out/``:
  a digits benchmark table, a store, an evolve run); shell blocks through
  ``eznas_store.cli.main``, Python blocks with ``exec``. Other Python blocks must compile.
* Every relative link resolves to a file of the repository (and a heading, for ``#anchor``);
  every repository path the manual names in backticks exists; nothing in the manual or the
  package cites a file outside the repository or the design document that used to be one;
  the package's citations of ``docs/*.md`` name existing files and sections.
* README.md is a front page (<= 200 lines, the two set-up commands first), and ``docs/``
  holds a guide page per command, the store card, the design, results, decisions, tutorial.

``docs/tutorial.md`` is run by ``tests/test_tutorial.py``.
"""

from __future__ import annotations

import functools
import re
import shlex
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
SHELL = {"bash", "sh", "shell", "console", ""}
#: marker of a block the tests run; of a block kept as an earlier command line ran it
RUNS, EARLIER, NOT_RUN = "runs: tiny", "as run: earlier CLI", "runs: no"
#: pages whose commands keep placeholders (options are checked, values are not)
NOTEBOOKS = {"docs/results.md"}
#: commands with no tiny example (they need CIFAR-10 and Suite-Zero files, or minutes)
NOT_TINY = {"proxy-table", "demo"}


def manual_files() -> list[Path]:
    return [README, *sorted(DOCS.rglob("*.md"))]


def rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


# --------------------------------------------------------------------------- markdown
@dataclass(frozen=True)
class Block:
    path: Path
    line: int  # 1-based line of the opening fence
    lang: str
    code: str
    marker: str | None  # text of an HTML comment on the nearest non-blank line before the fence

    @property
    def where(self) -> str:
        return f"{rel(self.path)}:{self.line}"


_FENCE = re.compile(r"^(\s*)```\s*([\w+-]*)\s*$")
_COMMENT = re.compile(r"^\s*<!--\s*(.*?)\s*-->\s*$")


def markdown_blocks(path: Path) -> list[Block]:
    """The fenced code blocks of a markdown file (indented fences included, dedented)."""
    lines = path.read_text(encoding="utf-8").split("\n")
    blocks, i = [], 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, lang, start = len(m.group(1)), m.group(2).lower(), i
        body = []
        i += 1
        while i < len(lines) and not re.match(r"^\s*```\s*$", lines[i]):
            body.append(lines[i][indent:] if lines[i][:indent].strip() == "" else lines[i])
            i += 1
        k = start - 1
        while k >= 0 and not lines[k].strip():
            k -= 1
        c = _COMMENT.match(lines[k]) if k >= 0 else None
        blocks.append(Block(path, start + 1, lang, "\n".join(body) + "\n", c.group(1) if c else None))
        i += 1
    return blocks


def prose(path: Path) -> str:
    """The file without its fenced blocks (their lines blanked, so line numbers hold)."""
    out, inside = [], False
    for line in path.read_text(encoding="utf-8").split("\n"):
        if _FENCE.match(line) or (inside and re.match(r"^\s*```\s*$", line)):
            inside = not inside
            out.append("")
            continue
        out.append("" if inside else line)
    return "\n".join(out)


def command_lines(code: str) -> list[list[str]]:
    """The argument lists of every ``eznas-store`` command in a shell block (comments,
    backslash continuations and environment prefixes handled)."""
    joined = re.sub(r"\\\n", " ", code)
    commands = []
    for line in joined.split("\n"):
        try:
            tokens = shlex.split(line, comments=True)
        except ValueError:
            tokens = line.split()
        if "eznas-store" in tokens:
            commands.append(tokens[tokens.index("eznas-store") + 1:])
    return commands


# --------------------------------------------------------------------------- the CLI
@functools.cache
def cli():
    import typer.main

    from eznas_store.cli import app

    return typer.main.get_command(app)


@functools.cache
def option_names(command) -> frozenset[str]:
    names = {"-h", "--help"}
    for p in command.params:
        if getattr(p, "param_type_name", "") == "option":
            names.update(p.opts)
            names.update(p.secondary_opts)
    return frozenset(names)


def check_options(argv: list[str], where: str) -> str | None:
    """Subcommand and option names only (placeholders allowed); returns the subcommand."""
    group = cli()
    if not argv or argv[0].startswith("-"):
        return None  # `eznas-store -h`, `eznas-store --version`
    name = argv[0]
    if name not in group.commands:
        assert name.isupper() or name.strip("[]").isupper(), f"{where}: no command {name!r}"
        return None  # a placeholder such as COMMAND
    known = option_names(group.commands[name])
    for token in argv[1:]:
        token = token.strip("[](),;.:|\\")
        if token.startswith("--") and len(token) > 2:
            flag = token.split("=", 1)[0]
            assert flag in known, f"{where}: eznas-store {name} has no option {flag}"
    return name


def check_parses(argv: list[str], where: str) -> None:
    """The whole command line, as click would parse it (no command runs)."""
    name = check_options(argv, where)
    if name is None:
        return
    command = cli().commands[name]
    try:
        command.make_context(f"eznas-store {name}", list(argv[1:]))
    except Exception as e:  # click's own usage errors, whichever copy of click
        pytest.fail(f"{where}: eznas-store {shlex.join(argv)}: {type(e).__name__}: {e}")


# --------------------------------------------------------------------------- structure
def test_readme_is_a_front_page_with_the_two_set_up_commands_first():
    text = README.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 200
    first = markdown_blocks(README)[0]
    lines = [ln.split("#")[0].strip() for ln in first.code.splitlines() if ln.strip()]
    assert lines == ["pip install torch==2.13.0 && pip install -e . && eznas-store demo",
                     "bash scripts/test.sh"], lines
    assert "bash scripts/test.sh" in (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    for page in ("docs/guide/index.md", "docs/store.md", "docs/tutorial.md", "docs/design.md",
                 "docs/results.md", "docs/decisions.md"):
        assert f"]({page}" in text, f"README does not link {page}"


def test_the_manual_has_a_page_per_command_and_the_store_card_a_proxy_section():
    commands = set(cli().commands)
    pages = {p.stem for p in (DOCS / "guide").glob("*.md")} - {"index"}
    assert pages == commands, f"guide pages {sorted(pages ^ commands)} do not match the commands"
    index = (DOCS / "guide" / "index.md").read_text(encoding="utf-8")
    for c in commands:
        assert f"({c}.md)" in index, f"docs/guide/index.md does not link {c}.md"
    for name in ("store", "design", "results", "decisions", "tutorial"):
        assert (DOCS / f"{name}.md").is_file()
    assert "\n## Proxy arrays\n" in (DOCS / "store.md").read_text(encoding="utf-8")


def test_every_command_has_a_tiny_example_that_runs():
    ran = set()
    for path in manual_files():
        for b in markdown_blocks(path):
            if b.marker == RUNS and b.lang in SHELL:
                ran.update(argv[0] for argv in command_lines(b.code))
    missing = set(cli().commands) - NOT_TINY - ran
    assert not missing, f"commands with no '<!-- {RUNS} -->' example: {sorted(missing)}"


# --------------------------------------------------------------------------- commands parse
@pytest.mark.parametrize("path", manual_files(), ids=rel)
def test_every_command_line_of_the_manual_parses(path):
    notebook = rel(path) in NOTEBOOKS
    found = 0
    for b in markdown_blocks(path):
        if b.lang in SHELL and b.marker != EARLIER:
            for argv in command_lines(b.code):
                (check_options if notebook else check_parses)(argv, b.where)
                found += 1
        elif b.lang == "python" and b.marker != RUNS:
            compile(b.code, b.where, "exec")
    text = prose(path)
    for m in re.finditer(r"`(eznas-store(?: [^`]*)?)`", text):
        line = text.count("\n", 0, m.start()) + 1
        argv = m.group(1).replace("\n", " ").split()[1:]
        check_options(argv, f"{rel(path)}:{line}")
        found += 1
    if path == README or path.parent.name == "guide":
        assert found, f"{rel(path)} names no eznas-store command"


# --------------------------------------------------------------------------- links, paths, citations
def slug(heading: str) -> str:
    """GitHub's anchor of a heading."""
    h = re.sub(r"<[^>]+>", "", heading).strip().lower()
    h = re.sub(r"[^\w\- ]", "", h)
    return h.replace(" ", "-")


@functools.cache
def anchors(path: Path) -> frozenset[str]:
    seen: dict[str, int] = {}
    out = set()
    for line in prose(path).split("\n"):
        m = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if m:
            s = slug(m.group(1))
            n = seen.get(s, 0)
            seen[s] = n + 1
            out.add(s if n == 0 else f"{s}-{n}")
    return frozenset(out)


@pytest.mark.parametrize("path", manual_files(), ids=rel)
def test_every_relative_link_resolves_to_a_file_and_heading_of_the_repository(path):
    text = prose(path)
    for m in re.finditer(r"!?\[[^\]]*\]\(([^)\s]+)\)", text):
        target = m.group(1)
        if re.match(r"^[a-z]+:", target):
            continue  # http:, https:, mailto:
        file, _, anchor = target.partition("#")
        dest = (path.parent / file).resolve() if file else path
        where = f"{rel(path)}: link {target}"
        assert dest.is_relative_to(ROOT) and dest.exists(), f"{where}: no such file in the repository"
        if anchor:
            assert dest.suffix == ".md" and anchor in anchors(dest), f"{where}: no heading #{anchor}"


_REPO_PATH = re.compile(r"`((?:eznas_store|tests|benchmarks|jobs|schemas|scripts|docs|\.ci)/[^`\s]*)`")


@pytest.mark.parametrize("path", manual_files(), ids=rel)
def test_every_repository_path_the_manual_names_exists(path):
    for m in _REPO_PATH.finditer(path.read_text(encoding="utf-8")):
        p = m.group(1).split("::")[0].rstrip("/.,;:")
        if re.search(r"[*<>{}]|/[A-Z]+\.|\bNAME\b", p):
            continue  # a pattern or a placeholder (jobs/*.toml, spaces/<name>.py)
        assert (ROOT / p).exists(), f"{rel(path)} names {p}, which is not in the repository"


#: what used to be cited from outside the repository
OUTSIDE = ("../shared", "/work/shared", "DESIGN.md", "DESIGN §", "DESIGN:", "PROXIES.md", "DARTS.md", "SOURCES.md")


def package_texts() -> list[Path]:
    pkg = ROOT / "eznas_store"
    return sorted([*pkg.rglob("*.py"), *pkg.rglob("*.json")])


def test_nothing_cites_a_file_outside_the_repository():
    for path in [*manual_files(), *package_texts()]:
        text = path.read_text(encoding="utf-8")
        for word in OUTSIDE:
            assert word not in text, f"{rel(path)} names {word!r}"


def design_sections() -> set[str]:
    found = set()
    for line in prose(DOCS / "design.md").split("\n"):
        m = re.match(r"^#{2,3}\s+(\d+(?:\.\d+)?)\.?\s", line)
        if m:
            found.add(m.group(1))
    return found


_CITATION = re.compile(r'(docs/[\w/.-]+\.md)`{0,2}((?:[\s,]*(?:and\s+)?§\s*\d+(?:\.\d+)?)*)(?:\s*"([^"\n]+)")?')


def test_the_packages_citations_of_the_manual_name_existing_files_and_sections():
    sections, cited = design_sections(), 0
    assert {"1", "2", "3", "4", "5", "6", "6.1", "6.2", "6.3", "6.4", "7"} <= sections
    for path in package_texts():
        text = path.read_text(encoding="utf-8")
        for m in _CITATION.finditer(text):
            doc, numbers, heading = m.group(1), m.group(2), m.group(3)
            where = f"{rel(path)} cites {m.group(0)!r}"
            assert (ROOT / doc).is_file(), f"{where}: no such file"
            for n in re.findall(r"§\s*(\d+(?:\.\d+)?)", numbers or ""):
                assert doc == "docs/design.md" and n in sections, f"{where}: no section {n}"
            if heading:
                assert slug(heading) in anchors(ROOT / doc), f"{where}: no heading {heading!r}"
            cited += 1
    assert cited >= 12, cited


def test_the_design_documents_every_operation_by_id():
    from eznas_store.programs.ops import OPS

    text = (DOCS / "design.md").read_text(encoding="utf-8")
    for name, op in OPS.items():
        assert f"| {op.id} | `{name}` | {op.arity} |" in text, f"docs/design.md: op {op.id} {name}"


# --------------------------------------------------------------------------- runnable blocks
def runnable_pages() -> list[Path]:
    return [p for p in manual_files()
            if p.name != "tutorial.md" and any(b.marker == RUNS for b in markdown_blocks(p))]


@pytest.fixture(scope="module")
def demo_out(tmp_path_factory, one_torch_thread):
    """A folder like the one ``eznas-store demo`` leaves, made small: ``demo-out/`` with a
    digits benchmark table (made-up accuracies), a store ingested from it (with proxies) and
    an evolve run on it, all by the command line and with relative paths."""
    import os

    from conftest import make_bench

    from eznas_store.cli import main

    home = tmp_path_factory.mktemp("docs-home")
    (home / "demo-out").mkdir()
    make_bench(home / "demo-out" / "digits_labels.csv", n=12, seed=3)
    before = os.getcwd()
    os.chdir(home)
    try:
        assert main(["ingest", "--store", "demo-out/store.zarr", "--benchmark", "demo-out/digits_labels.csv",
                     "--dataset", "digits", "--image-size", "8", "--channels", "4", "--cells", "1",
                     "--batch-size", "2", "--device", "cpu", "--no-progress"]) == 0
        assert main(["evolve", "demo-out/store.zarr", "--out", "demo-out/run", "--population", "6",
                     "--generations", "1", "--max-depth", "5", "--seed-programs", "eznas-a",
                     "--no-progress"]) == 0
    finally:
        os.chdir(before)
    return home


@pytest.mark.parametrize("path", runnable_pages(), ids=rel)
def test_the_manuals_tiny_examples_run_as_written(path, demo_out, tmp_path, monkeypatch, capsys):
    from eznas_store.cli import main

    work = tmp_path / "work"
    shutil.copytree(demo_out, work, symlinks=True)
    monkeypatch.chdir(work)
    namespace: dict = {"__name__": "__docs__"}
    for b in markdown_blocks(path):
        if b.marker != RUNS:
            continue
        if b.lang in SHELL:
            commands = command_lines(b.code)
            assert commands, f"{b.where}: a '{RUNS}' shell block with no eznas-store command"
            for argv in commands:
                rc = main(argv)
                err = capsys.readouterr().err
                assert rc == 0, f"{b.where}: eznas-store {shlex.join(argv)} exited {rc}: {err[-2000:]}"
        elif b.lang == "python":
            exec(compile(b.code, b.where, "exec"), namespace)
        else:
            pytest.fail(f"{b.where}: '{RUNS}' on a {b.lang!r} block")
