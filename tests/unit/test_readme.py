"""The README opens with exactly two set-up commands, and CI runs the second one verbatim."""

import re

from tests.helpers import ROOT


def test_readme_starts_with_the_two_setup_commands_and_ci_runs_the_test_one():
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)\n```", readme, re.S)
    first, second = blocks[0].strip(), blocks[1].strip()
    assert readme.index("```bash") < readme.index("##")  # before anything else
    assert first.endswith("python -m notus_lab") and "pip install -e ." in first
    assert "pytest" in second
    ci = (ROOT / ".ci" / "run").read_text()
    assert second in ci
