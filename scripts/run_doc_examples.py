"""
Run every Python code block of the README and the docs, so that the examples cannot rot.

The blocks of one page run in order in one Python process, as a reader pastes them into one script (a later block
may use what an earlier one defined), as ``__main__``, in a fresh temporary directory (files the examples save land
there). A block with an ``if __name__ == "__main__":`` guard is a complete script and runs in a process of its own
(SubprocVecEnv's workers import the main script, which must not hold the page's other blocks).

Training is capped: every ``learn()`` trains for at most
``SB3_PO_EXAMPLE_TIMESTEPS`` env steps (default 1000; the cap enters through SB3's ``BaseAlgorithm._setup_learn``,
which every SB3, sb3-contrib and sb3-po algorithm calls with the ``total_timesteps`` it was given). The cap exists
only in this script's processes: the package itself never reads that variable.

    python scripts/run_doc_examples.py                      # every page
    python scripts/run_doc_examples.py docs/guide/*.md      # some pages
    SB3_PO_EXAMPLE_TIMESTEPS=0 python scripts/run_doc_examples.py README.md   # no cap: the budgets as written
    python scripts/run_doc_examples.py --list               # the pages and their blocks, nothing run

``tests/test_docs.py`` runs each page as one test.
"""

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parents[1]
CAP_VARIABLE = "SB3_PO_EXAMPLE_TIMESTEPS"
DEFAULT_CAP = 1000
FENCE = re.compile(r"^(?P<indent> *)(?P<fence>`{3,}|~{3,})python\s*$")
MAIN_GUARD = re.compile(r"^if __name__ == .__main__.:", re.MULTILINE)

# Run before the page's code, in the same process: the budget cap
PREAMBLE = """
import os, runpy, sys
cap = int(os.environ.get("SB3_PO_EXAMPLE_TIMESTEPS", "{default}"))
if cap > 0:
    from stable_baselines3.common import base_class

    setup_learn = base_class.BaseAlgorithm._setup_learn

    def capped_setup_learn(self, total_timesteps, *args, **kwargs):
        return setup_learn(self, min(int(total_timesteps), cap), *args, **kwargs)

    base_class.BaseAlgorithm._setup_learn = capped_setup_learn
sys.argv = [sys.argv[1]]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


class Block(NamedTuple):
    line: int  # 1-based line of the first code line in its page
    code: str


class Page(NamedTuple):
    path: Path
    blocks: list[Block]

    @property
    def name(self) -> str:
        return str(self.path.relative_to(ROOT)) if self.path.is_relative_to(ROOT) else str(self.path)

    def scripts(self) -> list[str]:
        """
        The page's blocks as scripts, each block starting with a comment naming its page and line: the blocks in order
        as one script, except that a block with an ``if __name__ == "__main__":`` guard is a complete script of its own
        (SubprocVecEnv's worker processes import the main script: the page's other blocks must not run again there).
        """
        shared, own = [], []
        for block in self.blocks:
            code = f"# --- {self.name}, line {block.line}\n{block.code}"
            (own if MAIN_GUARD.search(block.code) else shared).append(code)
        return ["\n".join(shared)] * bool(shared) + own


def python_blocks(text: str) -> list[Block]:
    """The fenced ```python blocks of a Markdown text (other languages and ``{code-block}`` directives skipped)."""
    blocks, lines, i = [], text.splitlines(), 0
    while i < len(lines):
        match = FENCE.match(lines[i])
        if match is None:
            i += 1
            continue
        indent, fence = len(match["indent"]), match["fence"]
        start, i = i + 1, i + 1
        while i < len(lines) and not lines[i].strip().startswith(fence):
            i += 1
        blocks.append(Block(start + 1, "\n".join(line[indent:] for line in lines[start:i]) + "\n"))
        i += 1
    return blocks


def pages(paths: list[Path] | None = None) -> list[Page]:
    """The README and every Markdown page of docs/ (the build and the generated fragments excepted) with Python blocks."""
    if not paths:
        docs = (p for p in (ROOT / "docs").rglob("*.md") if "_build" not in p.parts and "generated" not in p.parts)
        paths = [ROOT / "README.md", *sorted(docs)]
    found = [Page(path.resolve(), python_blocks(path.read_text())) for path in paths]
    return [page for page in found if page.blocks]


def run(page: Page, cap: int | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """
    Run a page's scripts (see :meth:`Page.scripts`) one after another, each in a fresh directory; stops at the first
    that fails. The result's stdout and stderr hold what the examples printed.
    """
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    env.setdefault("OMP_NUM_THREADS", "1")
    env.setdefault("MPLBACKEND", "Agg")
    if cap is not None:
        env[CAP_VARIABLE] = str(cap)
    stdout, stderr, result = "", "", None
    for source in page.scripts():
        with tempfile.TemporaryDirectory(prefix="sb3_po_examples_") as work:
            script = Path(work) / "page.py"
            script.write_text(source)
            result = subprocess.run(
                [sys.executable, "-c", PREAMBLE.replace("{default}", str(DEFAULT_CAP)), str(script)],
                cwd=work,
                env=env,
                capture_output=True,
                text=True,
                timeout=timeout,
            )
        stdout, stderr = stdout + result.stdout, stderr + result.stderr
        if result.returncode != 0:
            break
    assert result is not None, f"{page.name} has no Python block"
    return subprocess.CompletedProcess(result.args, result.returncode, stdout, stderr)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="*", type=Path)
    parser.add_argument("--list", action="store_true", help="list the pages and their blocks' lines, run nothing")
    args = parser.parse_args()
    failed = 0
    for page in pages(args.paths):
        lines = ", ".join(str(block.line) for block in page.blocks)
        if args.list:
            print(f"{page.name}: {len(page.blocks)} blocks (lines {lines})")
            continue
        result = run(page)
        status = "ok" if result.returncode == 0 else "FAILED"
        print(f"{status:6} {page.name} ({len(page.blocks)} blocks, lines {lines})", flush=True)
        if result.returncode != 0:
            failed += 1
            print(result.stdout[-3000:], result.stderr[-6000:], sep="\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
