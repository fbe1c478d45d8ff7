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


def _tracked_text_files() -> list:
    try:
        out = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):  # not a git checkout (an sdist): the files on disk
        return [p for p in REPO.rglob("*") if p.is_file() and ".git" not in p.parts and ".cache" not in p.parts]
    return [REPO / name for name in out.decode().split("\0") if name]


def test_no_path_of_this_machine_in_project_files():
    # the checkout's own absolute path and that of the shared data folder beside it: a result file or a doc that
    # names them works on this machine only (benchmarks/_common.portable rewrites them in every result JSON)
    machine_paths = {str(REPO), str((REPO.parent / "shared").resolve())}
    offenders = []
    for file in _tracked_text_files():
        if file.suffix not in {".py", ".md", ".rst", ".json", ".toml", ".txt", ".cfg", ".yaml", ".yml", ""}:
            continue
        try:
            text = file.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        offenders += [f"{file.relative_to(REPO)}: {p}" for p in machine_paths if p in text]
    assert not offenders, offenders


def test_benchmark_results_are_written_with_portable_paths(tmp_path):
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        import _common
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    import json
    import tempfile

    tmp = tempfile.gettempdir()
    command = (f"python {REPO}/benchmarks/x.py --data {REPO.parent}/shared/data --teacher {tmp}/run/teacher "
               f"--out {tmp}/x.json")
    out = _common.write_json(tmp_path / "r.json", {"module": f"{REPO}/kdtext/__init__.py", "n": [1, "a/b"]},
                             command=command)
    data = json.loads(out.read_text(encoding="utf-8"))
    assert data["command"] == ("python benchmarks/x.py --data ../shared/data --teacher $TMPDIR/run/teacher "
                               "--out $TMPDIR/x.json")
    assert data["module"] == "kdtext/__init__.py"
    assert data["n"] == [1, "a/b"]
