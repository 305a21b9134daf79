"""
The documentation's promises: every Python code block of the README and the docs runs (at a reduced budget), the
generated results are current, the README stays a landing page and names the algorithms the quickstart takes.
"""

import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import results_pages  # noqa: E402
import run_doc_examples  # noqa: E402

CAP = 1000  # env steps per learn() call in the examples (SB3_PO_EXAMPLE_TIMESTEPS)


@pytest.mark.parametrize("page", run_doc_examples.pages(), ids=lambda page: page.name)
def test_code_blocks_run(page):
    result = run_doc_examples.run(page, cap=CAP)
    assert result.returncode == 0, f"{page.name}: its code blocks failed\n{result.stdout[-2000:]}\n{result.stderr[-5000:]}"


def test_every_page_with_code_is_collected():
    names = {page.name for page in run_doc_examples.pages()}
    assert {"README.md", "docs/modules/grpo.md", "docs/guide/grpo_custom_env.md", "docs/guide/quickstart.md"} <= names


def test_budget_cap_applies_to_every_learn_call(tmp_path):
    """The documented override: a learn() with a huge budget stops at the cap (plus the last rollout)."""
    page_file = tmp_path / "page.md"
    page_file.write_text(
        "```python\nfrom stable_baselines3 import PPO\nfrom sb3_po import GRPO\n"
        "m = PPO('MlpPolicy', 'CartPole-v1', n_steps=64, batch_size=64).learn(10**9)\n"
        "g = GRPO('MlpPolicy', 'CartPole-v1', group_size=2, n_groups=1).learn(10**9)\n"
        "print('steps', m.num_timesteps, g.num_timesteps)\n```\n"
    )
    page = run_doc_examples.Page(page_file, run_doc_examples.python_blocks(page_file.read_text()))
    result = run_doc_examples.run(page, cap=200)
    assert result.returncode == 0, result.stderr[-3000:]
    ppo_steps, grpo_steps = map(int, re.search(r"steps (\d+) (\d+)", result.stdout).groups())
    assert ppo_steps == 256  # the first rollout of 64 steps at or past 200: four rollouts
    assert 200 <= grpo_steps < 2000  # whole groups: GRPO stops after the group that crosses the cap


def test_python_blocks_are_found_with_their_lines():
    text = "intro\n```python\na = 1\n```\n\n```bash\nls\n```\n  ```python\n  b = 2\n  ```\n"
    assert run_doc_examples.python_blocks(text) == [
        run_doc_examples.Block(3, "a = 1\n"),
        run_doc_examples.Block(10, "b = 2\n"),
    ]


def test_generated_results_are_current():
    """docs/results/generated/*.md and the README's summary are what scripts/results_pages.py makes of benchmark_results/."""
    assert results_pages.main(["--check"]) == 0, "run: python scripts/results_pages.py"


def test_readme_is_a_landing_page():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 200


def test_quickstart_takes_the_algorithms_the_readme_lists():
    import quickstart

    readme = (ROOT / "README.md").read_text()
    listed = re.search(r"the algorithm, one of ((?:`\w+`(?:, )?)+)", readme)
    assert listed is not None
    assert re.findall(r"`(\w+)`", listed.group(1)) == list(quickstart.ALGOS)


def test_a_block_with_a_main_guard_is_a_script_of_its_own(tmp_path):
    """SubprocVecEnv's workers import the main script: a guarded block must not carry the page's other blocks."""
    text = "```python\na = 1\n```\n```python\nif __name__ == '__main__':\n    print('guarded')\n```\n```python\nb = a\n```\n"
    page = run_doc_examples.Page(tmp_path / "p.md", run_doc_examples.python_blocks(text))
    scripts = page.scripts()
    assert len(scripts) == 2 and "a = 1" in scripts[0] and "b = a" in scripts[0] and "guarded" not in scripts[0]
    assert "guarded" in scripts[1] and "a = 1" not in scripts[1]
