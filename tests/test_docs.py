"""The documentation builds in strict mode, and every command in it runs.

Convention for code blocks in ``docs/*.md`` and ``README.md`` (the markers are
HTML comments, invisible on the rendered page, on the line just before the fence):

- ``bash``/``console``/``shell``/``sh`` blocks: every line that starts with
  ``sdesign`` or ``python`` (after an optional ``$ `` prompt; ``\\`` continues a
  line) is run, in order, in one scratch folder per page. ``pip``, ``make``,
  ``git`` lines are not run.
- ``python`` blocks run only when marked ``<!-- test: run -->``; the blocks of one
  page share one namespace, like a doctest session.
- ``<!-- test: file NAME -->`` writes the block to ``NAME`` in the scratch folder
  (e.g. a model file that later commands use).
- ``<!-- test: skip: REASON -->`` skips a block (a reason is required); its
  ``sdesign`` lines are still checked against the CLI: the sub-command must exist
  and every ``--option`` must be one of its options.
- A shell block with a usage synopsis (``[--optional]``, ``<placeholder>`` or a
  ``$VARIABLE`` in a command) is checked the same way instead of run.

Toy scale: the scratch folder has ``examples/`` and ``adapters/`` (links), a copy
of ``docs/``, and ``model.py`` (a copy of ``examples/tiny_mlp.py``, for the
generic ``sdesign prune model.py`` lines); ``SDESIGN_TOY=1`` makes the example
model files use a few dozen samples; and each ``sdesign`` command gets the
options in :data:`TOY_OPTIONS` appended (the last value of an option wins).
"""
from __future__ import annotations

import os
import re
import runpy
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.glob("*.md")) + [p for p in [ROOT / "README.md"] if p.is_file()]
#: Pages this suite's owner writes: every python block there must be marked.
OWN_PAGES = {"index.md", "getting-started.md", "channel-graph.md", "plugins.md", "api.md", "results.md",
             "examples.md"}
SHELL = {"bash", "console", "shell", "sh"}
RUNNABLE = {"sdesign", "python"}
TOY_OPTIONS = {
    "prune": ["--epochs", "1"],
    "train": ["--epochs", "1"],
    "design": ["--epochs", "1", "--baseline-epochs", "1", "--train-epochs", "1", "--no-latency"],
    "reconstruct": ["--no-latency"],
    "evaluate": ["--no-latency"],
    "report": ["--no-plots"],
}
FENCE = re.compile(r"^(\s*)(```+|~~~+)\s*([\w+-]*)(.*)$")
MARKER = re.compile(r"^\s*<!--\s*test:\s*(.*?)\s*-->\s*$")
SYNOPSIS = re.compile(r"\[-|<[A-Za-z_]+>|\$\{?[A-Za-z_]")


@dataclass
class Block:
    page: Path
    line: int
    lang: str
    code: str
    marker: str | None  # "run", "skip: why", "file NAME" or None

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def blocks(page: Path) -> list[Block]:
    """The fenced code blocks of a page, with the test marker just before each."""
    lines = page.read_text(encoding="utf-8").splitlines()
    found, i, marker = [], 0, None
    while i < len(lines):
        m = MARKER.match(lines[i])
        if m:
            marker = m.group(1)
            i += 1
            continue
        fence = FENCE.match(lines[i])
        if fence:
            indent, ticks, lang = fence.group(1), fence.group(2), fence.group(3).lower()
            start, body = i + 1, []
            i += 1
            while i < len(lines) and not lines[i].strip().startswith(ticks):
                body.append(lines[i][len(indent):] if lines[i].startswith(indent) else lines[i])
                i += 1
            found.append(Block(page, start, lang, "\n".join(body) + "\n", marker))
            marker = None
        elif lines[i].strip():
            marker = None
        i += 1
    return found


def commands(block: Block) -> list[list[str]]:
    """The runnable command lines of a shell block, as argument lists."""
    joined, pending = [], ""
    for raw in block.code.splitlines():
        line = raw.rstrip()
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        joined.append(pending + line)
        pending = ""
    out = []
    for line in joined:
        line = line.strip()
        if line.startswith("$ "):
            line = line[2:]
        if not line or line.startswith("#"):
            continue
        argv = shlex.split(line, comments=True)
        if argv and Path(argv[0]).name in RUNNABLE:
            out.append(argv)
    return out


def is_synopsis(block: Block) -> bool:
    return block.lang in SHELL and any(SYNOPSIS.search(" ".join(c)) for c in commands(block))


def _checked_only(page: Path) -> list[Block]:
    """Shell blocks that are checked against the CLI instead of run."""
    return [b for b in blocks(page) if b.lang in SHELL and commands(b) and
            ((b.marker or "").startswith("skip") or is_synopsis(b))]


def _runnable(page: Path) -> list[Block]:
    keep = []
    for b in blocks(page):
        if (b.marker and b.marker.startswith("skip")) or is_synopsis(b):
            continue
        if (b.lang in SHELL and commands(b)) or (b.lang == "python" and b.marker in ("run",)) or \
                (b.marker or "").startswith("file "):
            keep.append(b)
    return keep


PAGES_TO_RUN = [p for p in PAGES if _runnable(p)]


# ---- the checks on the convention itself ----------------------------------------------

def test_markers_are_well_formed():
    for page in PAGES:
        for b in blocks(page):
            if b.marker is None:
                continue
            assert b.marker == "run" or re.fullmatch(r"skip:\s*\S.*", b.marker) or \
                re.fullmatch(r"file\s+[\w./-]+", b.marker), f"{b.where}: unknown test marker {b.marker!r}"
            if b.marker == "run":
                assert b.lang == "python", f"{b.where}: 'run' marks python blocks (shell blocks run anyway)"


def test_python_blocks_of_the_guide_are_all_run_or_skipped_with_a_reason():
    for page in PAGES:
        if page.name not in OWN_PAGES:
            continue
        for b in blocks(page):
            if b.lang == "python":
                assert b.marker is not None, f"{b.where}: mark the block <!-- test: run --> or <!-- test: skip: why -->"


def test_command_extraction():
    page = ROOT / "x.md"
    block = Block(page, 1, "bash", "$ sdesign prune model.py \\\n   --epochs 3   # comment\n"
                  "pip install foo\n.venv/bin/python -m x --y 'a b'\n", None)
    assert commands(block) == [["sdesign", "prune", "model.py", "--epochs", "3"],
                               [".venv/bin/python", "-m", "x", "--y", "a b"]]


def cli_problems(argv: list[str]) -> list[str]:
    """Why ``argv`` (an ``sdesign`` line) does not fit the CLI: unknown sub-commands or options."""
    import click

    from sparsenet_design.cli import main

    command, known, problems = main, set(), []
    ctx = click.Context(main)
    for token in argv[1:]:
        name = token.split("=", 1)[0]
        if isinstance(command, click.Group) and not token.startswith("-"):
            sub = command.get_command(ctx, token)
            if sub is not None:
                known |= {o for p in command.params for o in (*p.opts, *p.secondary_opts)}
                command = sub
                continue
        if token.startswith("-") and name not in ("-h", "--help"):
            options = known | {o for p in command.params for o in (*p.opts, *p.secondary_opts)}
            if name not in options:
                problems.append(f"`{name}` is not an option of `{command.name}`")
    if isinstance(command, click.Group):
        problems.append(f"`{' '.join(argv)}` names no sub-command of `{command.name}`")
    return problems


def test_command_check_catches_typos():
    assert cli_problems(["sdesign", "prune", "m.py", "--lam", "1e-5", "--out=x"]) == []
    assert cli_problems(["sdesign", "-q", "design", "m.py", "--rounds", "2"]) == []
    assert cli_problems(["sdesign", "prune", "m.py", "--lamda", "1"]) == ["`--lamda` is not an option of `prune`"]
    assert is_synopsis(Block(ROOT / "x.md", 1, "bash", "sdesign train $MF/a.py --epochs 3\n", None))


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_commands_not_run_still_fit_the_cli(page):
    for b in _checked_only(page):
        for argv in commands(b):
            if Path(argv[0]).name == "sdesign":
                assert cli_problems(argv) == [], f"{b.where}: {cli_problems(argv)}"


# ---- the strict build -----------------------------------------------------------------

def test_docs_build_strict(tmp_path):
    for module in ("mkdocs", "material", "mkdocstrings", "mkdocstrings_handlers.python", "mkdocs_click"):
        pytest.importorskip(module, reason=f"{module} is not installed (pip install -e '.[dev]')")
    site = tmp_path / "site"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "NO_COLOR": "1"}
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file",
                             str(ROOT / "mkdocs.yml"), "--site-dir", str(site)],
                            cwd=ROOT, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    api = (site / "api" / "index.html").read_text()
    assert "compress" in api and "Sparsify a copy of" in api  # rendered from the docstring
    cli = (site / "cli" / "index.html").read_text()
    for command in ("prune", "reconstruct", "report", "design"):
        assert f"sdesign {command}" in cli  # generated from the click group
    for img in re.findall(r"\]\((img/[^)\s]+)\)", "".join(p.read_text() for p in DOCS.glob("*.md"))):
        assert (site / img).is_file(), img


# ---- every command --------------------------------------------------------------------

def _scratch(tmp: Path) -> Path:
    shared = ROOT.parent / "shared"
    if shared.is_dir():  # commands may use ../shared/data, as from the repository root
        (tmp / "shared").symlink_to(shared, target_is_directory=True)
    tmp = tmp / "work"
    tmp.mkdir()
    for name in ("examples", "adapters"):
        (tmp / name).symlink_to(ROOT / name, target_is_directory=True)
    shutil.copytree(DOCS, tmp / "docs", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copyfile(ROOT / "examples" / "tiny_mlp.py", tmp / "model.py")
    return tmp


def _run_sdesign(argv: list[str], where: str) -> None:
    from click.testing import CliRunner

    from sparsenet_design.cli import main

    args = argv[1:]
    sub = next((a for a in args if not a.startswith("-")), None)
    args = args + TOY_OPTIONS.get(sub, [])
    result = CliRunner().invoke(main, args, catch_exceptions=True)
    detail = result.output
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        import traceback

        detail += "".join(traceback.format_exception(result.exception))
    assert result.exit_code == 0, f"{where}: `sdesign {' '.join(args)}` exited {result.exit_code}\n{detail}"


def _run_python(argv: list[str], where: str) -> None:
    args = argv[1:]
    if args[:1] == ["-c"] or not args:
        result = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, f"{where}: {shlex.join(argv)}\n{result.stdout}{result.stderr}"
        return
    saved = sys.argv[:]
    try:
        if args[0] == "-m":
            sys.argv = [args[1], *args[2:]]
            runpy.run_module(args[1], run_name="__main__", alter_sys=True)
        else:
            sys.argv = list(args)
            runpy.run_path(args[0], run_name="__main__")
    except SystemExit as exc:
        assert exc.code in (0, None), f"{where}: `{shlex.join(argv)}` exited {exc.code}"
    finally:
        sys.argv = saved


@pytest.mark.parametrize("page", PAGES_TO_RUN, ids=[p.name for p in PAGES_TO_RUN])
def test_every_command_runs(page, tmp_path, monkeypatch):
    monkeypatch.chdir(_scratch(tmp_path))
    monkeypatch.setenv("SDESIGN_TOY", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    import matplotlib

    matplotlib.use("Agg")
    namespace: dict = {"__name__": f"docs_{page.stem.replace('-', '_')}"}
    ran = 0
    for b in _runnable(page):
        if (b.marker or "").startswith("file "):
            Path(b.marker.split(None, 1)[1]).write_text(b.code)
        elif b.lang == "python":
            exec(compile(b.code, b.where, "exec"), namespace)  # noqa: S102  (the docs' own code)
            ran += 1
        else:
            for argv in commands(b):
                if Path(argv[0]).name == "sdesign":
                    _run_sdesign(argv, b.where)
                else:
                    _run_python(argv, b.where)
                ran += 1
    assert ran > 0
