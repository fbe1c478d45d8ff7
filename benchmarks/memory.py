"""Peak memory (RSS) of training a student on a large transfer set.

Distillation transfer sets are large: a teacher labels hundreds of thousands
to millions of unlabeled texts. This script measures what training a student
on ``N`` short texts with teacher logits costs in memory, for each ``--n``:

- ``data only`` (baseline): the process builds the texts and the logits and
  stops, so readers see what the data itself costs (Python, numpy, the
  strings and a float32 ``(N, 2)`` array);
- ``BiLSTMClassifier``:
  ``BiLSTMClassifier(epochs=1, batch_size=256, validation_fraction=None,
  random_state=0).fit_soft(texts, logits, classes=[0, 1], loss="mse",
  alpha=0.0)``;
- ``TF-IDF + Ridge``: ``make_pipeline(TfidfVectorizer(), Ridge())`` fitted on
  the same texts with the logits as a 2-column regression target.

Every row runs in a fresh Python subprocess (this script with ``--child``),
so its peak RSS is its own: ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` at
the end (KiB on Linux). Each child imports its libraries first, then builds
the data, then fits, and reports the peak RSS after each step, so
``before_fit_MB`` is imports plus data and ``peak_RSS_MB`` includes the fit.
``seconds`` is the fit's wall time (for the baseline: building the data).
MB are 10^6 bytes.

Texts: the distinct sentences and phrases of SST-2 (``train.csv``,
``dev.csv``, ``test.csv``: 69,669, 9.8 words on average), repeated to
reach ``N``. Every text gets one extra word drawn from SST-2's own word list,
chosen so that no two of the ``N`` texts are equal (a repeat of a sentence
never gets the same word twice) while the vocabulary stays that of SST-2.
Logits: standard normal float32, seeded. Both are deterministic given ``N``
and ``--seed``.

``--kdtext DIR`` imports kdtext from another source folder (e.g. an older
commit exported with ``git archive``), to compare before and after a change
with the same script.

Run (N=200,000: several minutes on 2 cores; N=1,000,000 about 5x that)::

    HF_HUB_OFFLINE=1 python benchmarks/memory.py --n 200000
    HF_HUB_OFFLINE=1 python benchmarks/memory.py --n 200000,1000000
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import _common  # noqa: E402

NAME = "memory"
ROOT = Path(__file__).resolve().parents[1]
DEFAULT_N = (200_000, 1_000_000)
# row kind -> name in the table, in the order they run
STUDENTS = {"data": "data only (baseline)", "bilstm": "BiLSTMClassifier", "tfidf_ridge": "TF-IDF + Ridge"}
RESULT_TAG = "MEMORY_RESULT "


# --------------------------------------------------------------------- data
def _read_texts(path: Path) -> list[str]:
    with open(path, newline="", encoding="utf-8") as f:
        return [row["text"] for row in csv.DictReader(f)]


def build_transfer_set(sst2: Path, n: int, seed: int = 0) -> tuple[list[str], Any]:
    """``n`` distinct short texts made from SST-2, and ``(n, 2)`` float32 random logits.

    Text ``i`` is SST-2 text ``j = order[i % P]`` (``P`` distinct texts,
    shuffled once) followed by one word of SST-2's vocabulary, number
    ``(offset[j] + i // P) % W``. Repeats of one text thus get different
    words (there are far fewer repeats than the ``W`` words), and texts that
    differ stay different, so all ``n`` texts are distinct.
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    texts = list(iter_transfer_texts(sst2, n, rng))
    logits = rng.standard_normal((n, 2), dtype=np.float32)
    return texts, logits


def iter_transfer_texts(sst2: Path, n: int, rng: Any):
    """The texts of :func:`build_transfer_set` one by one, never all in memory (``rng``: a numpy Generator)."""
    texts_by_split = (_read_texts(sst2 / f"{name}.csv") for name in ("train", "dev", "test"))
    pool = [t for t in dict.fromkeys(t.strip() for split in texts_by_split for t in split) if t]
    words = sorted({w for t in pool for w in t.split() if w.isalpha() and len(w) > 1})
    rounds = -(-n // len(pool))
    if rounds > len(words):
        raise ValueError(
            f"n={n} needs {rounds} repeats of the {len(pool)} SST-2 texts but only {len(words)} distinct extra "
            "words exist to keep them distinct; use a smaller --n."
        )
    order = rng.permutation(len(pool))
    offset = rng.integers(0, len(words), size=len(pool))
    n_pool, n_words = len(pool), len(words)
    for i in range(n):
        j = int(order[i % n_pool])
        yield f"{pool[j]} {words[(int(offset[j]) + i // n_pool) % n_words]}"


# --------------------------------------------------------------------- child: one row
def _peak_rss_kib() -> int:
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak // 1024 if sys.platform == "darwin" else peak  # bytes on macOS, KiB on Linux


def run_child(kind: str, n: int, sst2: Path, seed: int, threads: int | None) -> dict[str, Any]:
    """Import, build the data, fit one student; the peak RSS after each step."""
    t0 = time.perf_counter()
    if kind == "bilstm":
        import torch

        from kdtext import BiLSTMClassifier

        if threads:
            torch.set_num_threads(threads)
        # kdtext imports torch lazily: load what the fit will load before measuring the imports
        import kdtext._neural  # noqa: F401
        import kdtext.students  # noqa: F401
    elif kind == "tfidf_ridge":
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import Ridge
        from sklearn.pipeline import make_pipeline
    elif kind != "data":
        raise ValueError(f"unknown row kind {kind!r}; expected one of {sorted(STUDENTS)}")
    import numpy as np  # noqa: F401

    out: dict[str, Any] = {"kind": kind, "n": n, "import_s": time.perf_counter() - t0}
    out["after_imports_KiB"] = _peak_rss_kib()

    t0 = time.perf_counter()
    texts, logits = build_transfer_set(sst2, n, seed)
    out["data_s"] = time.perf_counter() - t0
    out["after_data_KiB"] = _peak_rss_kib()
    out["mean_words"] = sum(t.count(" ") + 1 for t in texts[:10_000]) / min(n, 10_000)

    t0 = time.perf_counter()
    if kind == "bilstm":
        student = BiLSTMClassifier(epochs=1, batch_size=256, validation_fraction=None, random_state=0)
        student.fit_soft(texts, logits, classes=[0, 1], loss="mse", alpha=0.0)
        out["threads"] = torch.get_num_threads()
        out["vocab"] = student.tokenizer_.get_vocab_size()
        out["kdtext_file"] = sys.modules["kdtext"].__file__
    elif kind == "tfidf_ridge":
        pipe = make_pipeline(TfidfVectorizer(), Ridge()).fit(texts, logits)
        out["features"] = len(pipe[0].vocabulary_)
    out["fit_s"] = time.perf_counter() - t0 if kind != "data" else None
    out["peak_KiB"] = _peak_rss_kib()
    return out


# --------------------------------------------------------------------- parent
def parse_sizes(values: list[str] | None) -> list[int]:
    """``--n 200000 --n 1000000`` or ``--n 200000,1000000`` (underscores allowed) as ints."""
    if not values:
        return list(DEFAULT_N)
    sizes = []
    for value in values:
        for part in value.split(","):
            part = part.strip().replace("_", "")
            if not part:
                continue
            if not part.isdigit() or int(part) < 1:
                raise SystemExit(f"--n takes positive integers (e.g. --n 200000,1000000), got {part!r}")
            sizes.append(int(part))
    return list(dict.fromkeys(sizes))


def _git_commit(folder: Path) -> str | None:
    try:
        commit = subprocess.run(
            ["git", "-C", str(folder), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(folder), "status", "--porcelain", "--", "kdtext"], capture_output=True, text=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return commit + (" (kdtext/ has uncommitted changes)" if dirty else "")


def measure_row(kind: str, n: int, args: argparse.Namespace) -> dict[str, Any]:
    """Run one row in a fresh subprocess and return its report (or the error)."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", kind, "--n", str(n),
           "--seed", str(args.seed), "--data", str(args.data_root)]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    if args.kdtext:
        cmd += ["--kdtext", str(args.kdtext)]
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
    except subprocess.TimeoutExpired:
        return {"kind": kind, "n": n, "error": f"timed out after {args.timeout:.0f} s"}
    wall = time.perf_counter() - t0
    lines = [line for line in proc.stdout.splitlines() if line.startswith(RESULT_TAG)]
    if proc.returncode != 0 or not lines:
        tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
        return {"kind": kind, "n": n, "error": f"exit code {proc.returncode}: {tail}"}
    report = json.loads(lines[-1][len(RESULT_TAG):])
    report["process_s"] = wall
    return report


def to_row(report: dict[str, Any]) -> dict[str, Any]:
    mb = lambda kib: None if kib is None else kib * 1024 / 1e6  # noqa: E731
    row = {"student": STUDENTS[report["kind"]], "n": f"{report['n']:,}"}
    if "error" in report:
        return {**row, "peak_RSS_MB": None, "before_fit_MB": None, "seconds": None, "note": report["error"][:80]}
    seconds = report["data_s"] if report["kind"] == "data" else report["fit_s"]
    return {
        **row,
        "peak_RSS_MB": mb(report["peak_KiB"]),
        "before_fit_MB": mb(report["after_data_KiB"]),
        "seconds": seconds,
        "note": "building the data" if report["kind"] == "data" else "",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    _common.add_common_args(parser, NAME)
    parser.add_argument("--n", action="append", metavar="N[,N...]",
                        help="transfer-set sizes, repeatable or comma-separated (default: 200000,1000000)")
    parser.add_argument("--students", default=",".join(STUDENTS),
                        help=f"comma-separated rows to run, from {','.join(STUDENTS)} (default: all)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the extra words and the logits")
    parser.add_argument("--threads", type=int, default=None, help="torch threads for the BiLSTM (default: torch's)")
    parser.add_argument("--timeout", type=float, default=7200.0,
                        help="longest run of one row, seconds (default: %(default)s)")
    parser.add_argument("--max-busy", type=float, default=0.15,
                        help="before each row wait until other processes use less than this share of the CPUs "
                             "(default: %(default)s; 1 disables waiting)")
    parser.add_argument("--wait", type=float, default=120.0,
                        help="longest wait for idle CPUs, seconds (default: %(default)s)")
    parser.add_argument("--kdtext", type=Path, default=None,
                        help="import kdtext from this source folder (holding kdtext/) instead of the installed one")
    parser.add_argument("--child", choices=sorted(STUDENTS), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.kdtext is not None:
        if not (args.kdtext / "kdtext" / "__init__.py").is_file():
            raise SystemExit(f"--kdtext {args.kdtext} holds no kdtext/__init__.py; pass the folder that holds kdtext/")
        sys.path.insert(0, str(args.kdtext.resolve()))
    sizes = parse_sizes(args.n)
    args.data_root = _common.data_dir(args.data)
    sst2 = _common.data_dir(args.data_root, "sst2")

    if args.child:  # one row, in this fresh process
        report = run_child(args.child, sizes[0], sst2, args.seed, args.threads)
        print(RESULT_TAG + json.dumps(report), flush=True)
        return 0

    kinds = [k.strip() for k in args.students.split(",") if k.strip()]
    unknown = [k for k in kinds if k not in STUDENTS]
    if unknown or not kinds:
        raise SystemExit(f"--students takes a comma-separated subset of {','.join(STUDENTS)}, got {args.students!r}")
    source = args.kdtext.resolve() if args.kdtext else ROOT
    print(f"transfer sets of {', '.join(f'{n:,}' for n in sizes)} texts from {sst2}; kdtext from {source}", flush=True)

    reports, busy = [], []
    for n in sizes:
        for kind in kinds:
            busy.append(_common.wait_for_idle_cpu(args.max_busy, args.wait))
            print(f"n={n:,} {STUDENTS[kind]} ...", flush=True)
            report = measure_row(kind, n, args)
            reports.append(report)
            if "error" in report:
                print(f"  FAILED: {report['error']}", flush=True)
            else:
                row = to_row(report)
                print(f"  peak RSS {row['peak_RSS_MB']:.0f} MB, {row['seconds']:.1f} s", flush=True)

    print()
    _common.print_table([to_row(r) for r in reports],
                        columns=["student", "n", "peak_RSS_MB", "before_fit_MB", "seconds", "note"], floatfmt="{:.1f}")
    print("(peak_RSS_MB: ru_maxrss of a fresh process per row; before_fit_MB: its peak after imports and data; "
          "MB = 10^6 bytes; seconds: fit wall time)")
    _common.write_json(
        args.out,
        {
            "benchmark": NAME,
            "texts": "distinct SST-2 train/dev/test texts repeated to n, each + 1 SST-2 word keeping all n distinct",
            "sizes": sizes,
            "seed": args.seed,
            "kdtext_source": str(source),
            "kdtext_commit": _git_commit(source),
            "cpu_busy_before_rows": busy,
            "rows": [to_row(r) for r in reports],
            "reports": reports,
        },
    )
    return 1 if any("error" in r for r in reports) else 0


if __name__ == "__main__":
    sys.exit(main())
