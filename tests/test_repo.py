"""The repository's own promises: CI runs the README's test command; the package imports lazily."""

from __future__ import annotations

import re
import subprocess
import sys

from conftest import REPO


def _bash_blocks(text: str) -> list[str]:
    return [b.strip() for b in re.findall(r"```bash\n(.*?)```", text, re.S)]


def test_readme_has_exactly_two_setup_commands_and_ci_runs_the_test_one():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    blocks = _bash_blocks(readme)
    assert len(blocks) == 2, blocks
    test_command = next(b for b in blocks if "pytest" in b)
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    assert test_command in ci.splitlines()
    assert test_command.startswith("pip install torch==2.13.0 && ")  # CPU torch before the project


def test_import_is_lazy():
    code = "import sys, kdtext; print('torch' in sys.modules, 'transformers' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_public_names():
    import kdtext

    for name in ("DistillationClassifier", "TransformerClassifier", "BiLSTMClassifier", "OnnxClassifier"):
        assert name in kdtext.__all__
        assert getattr(kdtext, name).__name__ == name
