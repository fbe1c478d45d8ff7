"""Peak memory of DistillationClassifier.fit on a transfer set of files: streamed vs read into a list.

For each ``--n``, the script writes ``N`` distinct short texts to Parquet in
a temporary folder, labels them once with a cheap teacher through
``label_texts`` (so the fits below run the teacher on nothing), then runs two
fits, each in a fresh Python subprocess (this script with ``--child``):

- ``stream``: ``DistillationClassifier(teacher, student, memory=labels,
  stream=True).fit(TextFiles(corpus))``: the files are read chunk by chunk on
  each pass (hash and de-duplicate, look up the labels, learn the vocabulary,
  tokenize to a disk-backed store, train, predict for ``fidelity_``);
- ``list``: the same fit on ``list(TextFiles(corpus))``, the in-memory path.

Teacher: ``TfidfVectorizer(sublinear_tf=True) + LogisticRegression`` fitted
on the SST-2 train split. Student (``--student``): ``bilstm`` (the default),
``BiLSTMClassifier(vocab_size=2000, embedding_dim=32, hidden_dim=32,
epochs=1, batch_size=--batch-size, validation_fraction=None,
random_state=0)``; or ``sgd``, ``make_pipeline(HashingVectorizer(ngram_range=(1,
2), n_features=2**20, alternate_sign=False), SGDClassifier(loss="log_loss",
random_state=0))``, the scikit-learn student that streams by ``partial_fit``
(``stream_epochs=--stream-epochs``; in memory SGD's own ``fit``). Texts: those of
``benchmarks/memory.py`` (SST-2 train/dev/test sentences and phrases
repeated to ``N``, each with one extra SST-2 word so that all ``N`` are
distinct while the vocabulary stays SST-2's).

Measured in each child, MB = 10^6 bytes:

- ``peak_RSS_MB``: ``getrusage(RUSAGE_SELF).ru_maxrss`` at the end of the fit;
  it counts file-backed pages too (the memory-mapped token store and teacher
  outputs of the streaming fit), which the kernel can drop under pressure;
- ``peak_anon_MB``: the largest ``RssAnon`` of ``/proc/self/status`` seen by a
  thread sampling every 20 ms: the memory that cannot be dropped;
- ``base_MB``: ``ru_maxrss`` after the imports and the teacher were loaded,
  before the fit.

The slope (MB per million texts) of each path is the least-squares line
through its peaks over the sizes run; flat is the goal. Run with one torch
thread (``OMP_NUM_THREADS=1``) on a shared machine::

    OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 python benchmarks/stream_scale.py --n 100000,1000000

Each size writes ``benchmarks/results/stream_scale-<N>.json``
(``stream_scale-sgd-<N>.json`` for ``--student sgd``); the slopes go into the
file of the largest size.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import _common  # noqa: E402
from memory import _git_commit, _read_texts, iter_transfer_texts, parse_sizes  # noqa: E402

NAME = "stream_scale"
MODES = ("stream", "list")
RESULT_TAG = "STREAM_SCALE_RESULT "
ROWS_PER_FILE = 1_000_000  # Parquet files of the corpus
BATCH_ROWS = 65_536  # rows per Parquet row group / write


# --------------------------------------------------------------------- data and teacher (parent)
def write_corpus(sst2: Path, n: int, folder: Path, seed: int) -> float:
    """``n`` texts as Parquet files of at most ``ROWS_PER_FILE`` rows in ``folder``; seconds taken."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    t0 = time.perf_counter()
    folder.mkdir(parents=True, exist_ok=True)
    texts = iter_transfer_texts(sst2, n, np.random.default_rng(seed))
    written, part = 0, 0
    while written < n:
        rows = min(ROWS_PER_FILE, n - written)
        with pq.ParquetWriter(folder / f"part-{part:04d}.parquet", pa.schema([("text", pa.string())])) as writer:
            left = rows
            while left:
                batch = [next(texts) for _ in range(min(BATCH_ROWS, left))]
                writer.write_table(pa.table({"text": batch}))
                left -= len(batch)
        written += rows
        part += 1
    return time.perf_counter() - t0


def fit_teacher(sst2: Path, path: Path) -> dict[str, Any]:
    import csv

    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    with open(sst2 / "train.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    texts, labels = [r["text"] for r in rows], [int(r["label"]) for r in rows]
    t0 = time.perf_counter()
    teacher = make_pipeline(TfidfVectorizer(sublinear_tf=True), LogisticRegression(max_iter=1000)).fit(texts, labels)
    path.write_bytes(pickle.dumps(teacher))
    return {"teacher_train_rows": len(texts), "teacher_fit_s": time.perf_counter() - t0}


# --------------------------------------------------------------------- child: one fit
class AnonSampler:
    """The largest RssAnon of this process, sampled every ``interval`` s by a daemon thread (Linux)."""

    def __init__(self, interval: float = 0.02):
        self.interval, self.peak_kib, self._stop = interval, 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def read_kib() -> int:
        try:
            with open("/proc/self/status", encoding="ascii") as f:
                for line in f:
                    if line.startswith("RssAnon:"):
                        return int(line.split()[1])
        except OSError:
            pass
        return 0

    def _run(self):
        while not self._stop.is_set():
            self.peak_kib = max(self.peak_kib, self.read_kib())
            self._stop.wait(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak_kib = max(self.peak_kib, self.read_kib())


def _peak_rss_kib() -> int:
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak // 1024 if sys.platform == "darwin" else peak  # bytes on macOS, KiB on Linux


def make_student(kind: str, batch_size: int):
    from kdtext import BiLSTMClassifier

    if kind == "sgd":
        from sklearn.feature_extraction.text import HashingVectorizer
        from sklearn.linear_model import SGDClassifier
        from sklearn.pipeline import make_pipeline

        return make_pipeline(HashingVectorizer(ngram_range=(1, 2), n_features=1 << 20, alternate_sign=False),
                             SGDClassifier(loss="log_loss", random_state=0))
    return BiLSTMClassifier(vocab_size=2000, embedding_dim=32, hidden_dim=32, epochs=1, batch_size=batch_size,
                            validation_fraction=None, random_state=0)


def run_child(mode: str, n: int, corpus: Path, labels: Path, teacher_file: Path, batch_size: int,
              kind: str = "bilstm", stream_epochs: int = 5) -> dict[str, Any]:
    t0 = time.perf_counter()
    import numpy as np
    import pyarrow.parquet  # noqa: F401 - TextFiles reads with it: imported before the baseline
    import torch

    import kdtext._neural  # noqa: F401
    import kdtext.students  # noqa: F401
    from kdtext import DistillationClassifier, TextFiles

    teacher = pickle.loads(teacher_file.read_bytes())
    out: dict[str, Any] = {"mode": mode, "n": n, "import_s": time.perf_counter() - t0,
                           "threads": torch.get_num_threads(), "kdtext_file": sys.modules["kdtext"].__file__}
    out["base_KiB"] = _peak_rss_kib()
    out["base_anon_KiB"] = AnonSampler.read_kib()
    student = make_student(kind, batch_size)
    files = TextFiles(str(corpus / "*.parquet"))
    with AnonSampler() as anon:
        t0 = time.perf_counter()
        if mode == "stream":
            kd = DistillationClassifier(teacher, student, memory=labels, stream=True,
                                        stream_epochs=stream_epochs).fit(files)
        else:
            texts = list(files)
            out["list_s"] = time.perf_counter() - t0
            kd = DistillationClassifier(teacher, student, memory=labels, stream=False).fit(texts)
        out["fit_s"] = time.perf_counter() - t0
    out["peak_KiB"] = _peak_rss_kib()
    out["peak_anon_KiB"] = anon.peak_kib
    out.update(streamed=bool(kd.streamed_), n_transfer=int(kd.n_transfer_), n_teacher_calls=int(kd.n_teacher_calls_),
               fidelity=float(kd.fidelity_), student=kind,
               vocab=int(kd.student_.tokenizer_.get_vocab_size()) if kind == "bilstm" else None,
               logits_memmapped=isinstance(kd.teacher_logits_, np.memmap))
    return out


# --------------------------------------------------------------------- parent
def measure(mode: str, n: int, paths: dict[str, Path], args) -> dict[str, Any]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", mode, "--n", str(n),
           "--corpus", str(paths["corpus"]), "--labels", str(paths["labels"]), "--teacher", str(paths["teacher"]),
           "--batch-size", str(args.batch_size), "--student", args.student,
           "--stream-epochs", str(args.stream_epochs)]
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
    except subprocess.TimeoutExpired:
        return {"mode": mode, "n": n, "error": f"timed out after {args.timeout:.0f} s"}
    lines = [line for line in proc.stdout.splitlines() if line.startswith(RESULT_TAG)]
    if proc.returncode != 0 or not lines:
        tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
        return {"mode": mode, "n": n, "error": f"exit code {proc.returncode}: {tail}"}
    report = json.loads(lines[-1][len(RESULT_TAG):])
    report["process_s"] = time.perf_counter() - t0
    return report


def _mb(kib):
    return None if kib is None else kib * 1024 / 1e6


def to_row(r: dict[str, Any]) -> dict[str, Any]:
    row = {"fit": r["mode"], "n": f"{r['n']:,}"}
    if "error" in r:
        return {**row, "note": r["error"][:80]}
    return {**row, "peak_RSS_MB": _mb(r["peak_KiB"]), "peak_anon_MB": _mb(r["peak_anon_KiB"]),
            "base_MB": _mb(r["base_KiB"]), "fit_s": r["fit_s"], "teacher_calls": r["n_teacher_calls"],
            "fidelity": r["fidelity"]}


def slopes(reports: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Least-squares MB per million texts of peak RSS and peak anonymous RSS, per mode (two sizes or more)."""
    import numpy as np

    out = {}
    for mode in MODES:
        rs = [r for r in reports if r["mode"] == mode and "error" not in r]
        if len({r["n"] for r in rs}) < 2:
            continue
        x = np.array([r["n"] for r in rs], dtype=float) / 1e6
        out[mode] = {
            key: float(np.polyfit(x, [_mb(r[f"{kind}_KiB"]) for r in rs], 1)[0])
            for key, kind in (("peak_RSS_MB_per_M", "peak"), ("peak_anon_MB_per_M", "peak_anon"))
        }
        out[mode]["sizes"] = sorted({r["n"] for r in rs})
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    _common.add_common_args(parser, NAME)
    parser.add_argument("--n", action="append", metavar="N[,N...]",
                        help="transfer-set sizes, repeatable or comma-separated (default: 100000,1000000)")
    parser.add_argument("--modes", default=",".join(MODES), help="fits to run: stream,list (default: both)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=512, help="the student's batch size (default: 512)")
    parser.add_argument("--student", choices=("bilstm", "sgd"), default="bilstm",
                        help="bilstm (default) or sgd: HashingVectorizer + SGDClassifier, streamed by partial_fit")
    parser.add_argument("--stream-epochs", type=int, default=5, help="stream_epochs of the sgd student (default: 5)")
    parser.add_argument("--timeout", type=float, default=7200.0, help="longest fit, seconds")
    parser.add_argument("--tmp", type=Path, default=None, help="folder for the corpus and labels (default: a temp dir)")
    parser.add_argument("--child", choices=MODES, help=argparse.SUPPRESS)
    parser.add_argument("--corpus", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--labels", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--teacher", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.n is None:
        args.n = ["100000,1000000"]
    sizes = parse_sizes(args.n)

    if args.child:
        report = run_child(args.child, sizes[0], args.corpus, args.labels, args.teacher, args.batch_size,
                           args.student, args.stream_epochs)
        print(RESULT_TAG + json.dumps(report), flush=True)
        return 0

    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if not modes or any(m not in MODES for m in modes):
        raise SystemExit(f"--modes takes a comma-separated subset of {','.join(MODES)}, got {args.modes!r}")
    sst2 = _common.data_dir(args.data, "sst2")
    _read_texts(sst2 / "train.csv")  # fail early on a broken data folder
    from kdtext import TextFiles, label_texts

    reports: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="kdtext-stream-scale-", dir=args.tmp) as tmp:
        tmp = Path(tmp)
        paths = {"teacher": tmp / "teacher.pkl"}
        setup = fit_teacher(sst2, paths["teacher"])
        teacher = pickle.loads(paths["teacher"].read_bytes())
        print(f"teacher: TF-IDF + LogisticRegression on {setup['teacher_train_rows']:,} SST-2 train rows "
              f"({setup['teacher_fit_s']:.1f} s)", flush=True)
        for n in sizes:
            paths["corpus"], paths["labels"] = tmp / f"corpus-{n}", tmp / f"labels-{n}"
            write_s = write_corpus(sst2, n, paths["corpus"], args.seed)
            labeled = label_texts(teacher, TextFiles(str(paths["corpus"] / "*.parquet")), out=paths["labels"],
                                  shard_size=65_536)
            print(f"n={n:,}: corpus written in {write_s:.1f} s, labeled in {labeled.seconds:.1f} s "
                  f"({labeled.n_shards} shards)", flush=True)
            rows_n = []
            for mode in modes:
                print(f"  {mode} fit ...", flush=True)
                report = measure(mode, n, paths, args)
                report.update(corpus_write_s=write_s, label_s=labeled.seconds)
                rows_n.append(report)
                if "error" in report:
                    print(f"  FAILED: {report['error']}", flush=True)
                else:
                    print(f"  peak RSS {_mb(report['peak_KiB']):.0f} MB (anon {_mb(report['peak_anon_KiB']):.0f} MB),"
                          f" {report['fit_s']:.0f} s", flush=True)
            reports.extend(rows_n)
            suffix = "" if args.student == "bilstm" else f"-{args.student}"
            _common.write_json(args.out.with_name(f"{NAME}{suffix}-{n}.json"), {
                "benchmark": NAME, "n": n, "seed": args.seed, "batch_size": args.batch_size, "student": args.student,
                "stream_epochs": args.stream_epochs, **setup,
                "kdtext_commit": _git_commit(Path(__file__).resolve().parents[1]),
                "rows": [to_row(r) for r in rows_n], "reports": rows_n,
                **({"slopes": slopes(reports), "sizes_in_slopes": sizes} if n == max(sizes) else {}),
            })
            import shutil

            shutil.rmtree(paths["corpus"])
            shutil.rmtree(paths["labels"])

    print()
    _common.print_table([to_row(r) for r in reports], columns=["fit", "n", "peak_RSS_MB", "peak_anon_MB", "base_MB",
                                                              "fit_s", "teacher_calls", "fidelity"],
                        floatfmt="{:.1f}")
    print("(peak_RSS_MB: ru_maxrss of a fresh process per fit, file-backed mapped pages included; peak_anon_MB: "
          "largest RssAnon sampled every 20 ms; base_MB: ru_maxrss after imports and the teacher; MB = 10^6 bytes)")
    for mode, s in slopes(reports).items():
        print(f"slope {mode}: {s['peak_RSS_MB_per_M']:.1f} MB peak RSS and {s['peak_anon_MB_per_M']:.1f} MB peak "
              f"anonymous RSS per million texts")
    return 1 if any("error" in r for r in reports) else 0


if __name__ == "__main__":
    sys.exit(main())
