"""Student vs teacher inference throughput, size and parameter count.

On the same 2,000 real SST-2 sentences, measures ``predict_proba`` texts/s of:

- the teacher: ``kdtext.TransformerClassifier(None)`` (the installed
  all-MiniLM-L6-v2), fitted for 1 epoch on the first 200 SST-2 train texts
  with ``validation_fraction=None`` only so that it has a 2-class head
  (throughput does not depend on the weights);
- ``kdtext.BiLSTMClassifier()`` at its default size, fitted on the first
  ``--n-train`` SST-2 train texts (its tokenizer is learnt from them);
- TF-IDF (word 1-2 grams, sublinear tf) + ``LogisticRegression`` in a
  scikit-learn pipeline, fitted on the same texts.

Texts: SST-2 ``dev.csv`` (872) + the first 1,128 rows of ``test.csv`` = 2,000
full sentences (19 words on average; the train rows are often short phrases),
the same texts as ``teacher_throughput.py``. Each model is warmed up once on
all texts, then timed 3 times (``--repeats``); the best time is kept.

Also reports parameter counts (for TF-IDF + LR: coefficients + intercepts) and
size on disk (the ``save_pretrained`` folder for kdtext models, a
``joblib.dump`` file for the scikit-learn pipeline).

Targets: BiLSTM >= 20x and TF-IDF + linear >= 100x the teacher's texts/s.

Run (a few minutes on 2 cores)::

    HF_HUB_OFFLINE=1 python benchmarks/student_throughput.py
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

import _common  # noqa: E402

NAME = "student_throughput"
TARGETS = {"BiLSTMClassifier": 20.0, "TF-IDF + LogisticRegression": 100.0}


def read_csv(path: Path, limit: int | None = None) -> tuple[list[str], np.ndarray]:
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    rows = rows if limit is None else rows[:limit]
    return [r["text"] for r in rows], np.array([int(r["label"]) for r in rows])


def load_benchmark_texts(sst2: Path, n: int) -> tuple[list[str], np.ndarray]:
    dev, y_dev = read_csv(sst2 / "dev.csv")
    test, y_test = read_csv(sst2 / "test.csv", max(0, n - len(dev)))
    return (dev + test)[:n], np.concatenate([y_dev, y_test])[:n]


def folder_size(path: Path) -> int:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def best_throughput(predict_proba, texts: list[str], repeats: int) -> tuple[float, np.ndarray]:
    proba = predict_proba(texts)  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        predict_proba(texts)
        best = min(best, time.perf_counter() - t0)
    return len(texts) / best, proba


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    _common.add_common_args(parser, NAME)
    parser.add_argument("--n-texts", type=int, default=2000, help="texts to time (dev + test)")
    parser.add_argument("--n-train", type=int, default=10000, help="SST-2 train texts for the students")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per model; best kept")
    parser.add_argument("--threads", type=int, default=None, help="torch threads for all models (default: torch's)")
    args = parser.parse_args(argv)

    import joblib
    import torch
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    from kdtext import BiLSTMClassifier, TransformerClassifier

    if args.threads:
        torch.set_num_threads(args.threads)
    sst2 = _common.data_dir(args.data, "sst2")
    texts, labels = load_benchmark_texts(sst2, args.n_texts)
    train_x, train_y = read_csv(sst2 / "train.csv", args.n_train)
    print(
        f"{len(texts)} texts (sst2 dev + test), students fitted on {len(train_x)} train texts, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads",
        flush=True,
    )

    tmp = tempfile.TemporaryDirectory(prefix="kdtext_students_")
    rows, details = [], {}

    # teacher
    teacher = TransformerClassifier(
        None, epochs=1, validation_fraction=None, n_iter_no_change=None, random_state=0, device="cpu"
    ).fit(train_x[:200], train_y[:200])
    t_folder = teacher.save_pretrained(Path(tmp.name) / "teacher")
    rate, proba = best_throughput(teacher.predict_proba, texts, args.repeats)
    rows.append(
        {
            "model": "TransformerClassifier (MiniLM-L6)",
            "texts_per_s": rate,
            "params": sum(p.numel() for p in teacher.model_.parameters()),
            "disk_MB": folder_size(t_folder) / 1e6,
            "accuracy": float(np.mean(proba.argmax(1) == labels)),
        }
    )
    print(f"teacher: {rate:.0f} texts/s", flush=True)
    del teacher

    # BiLSTM student at its default size
    t0 = time.perf_counter()
    bilstm = BiLSTMClassifier(random_state=0, device="cpu").fit(train_x, train_y)
    fit_s = time.perf_counter() - t0
    b_folder = bilstm.save_pretrained(Path(tmp.name) / "bilstm")
    rate, proba = best_throughput(bilstm.predict_proba, texts, args.repeats)
    rows.append(
        {
            "model": "BiLSTMClassifier",
            "texts_per_s": rate,
            "params": sum(p.numel() for p in bilstm.model_.parameters()),
            "disk_MB": folder_size(b_folder) / 1e6,
            "accuracy": float(np.mean(proba.argmax(1) == labels)),
        }
    )
    details["bilstm"] = {
        "params": {k: v for k, v in bilstm.get_params().items() if k != "embeddings"},
        "vocab": bilstm.tokenizer_.get_vocab_size(),
        "mean_tokens": float(np.mean([len(s) for s in bilstm._encode(texts)])),
        "fit_seconds": fit_s,
        "epochs_run": bilstm.n_iter_,
    }
    print(f"bilstm: {rate:.0f} texts/s", flush=True)

    # TF-IDF + logistic regression
    tfidf = make_pipeline(
        TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=2), LogisticRegression(max_iter=1000)
    ).fit(train_x, train_y)
    sk_file = Path(tmp.name) / "tfidf_lr.joblib"
    joblib.dump(tfidf, sk_file)
    rate, proba = best_throughput(tfidf.predict_proba, texts, args.repeats)
    lr = tfidf[-1]
    rows.append(
        {
            "model": "TF-IDF + LogisticRegression",
            "texts_per_s": rate,
            "params": int(lr.coef_.size + lr.intercept_.size),
            "disk_MB": sk_file.stat().st_size / 1e6,
            "accuracy": float(np.mean(proba.argmax(1) == labels)),
        }
    )
    details["tfidf"] = {"features": int(lr.coef_.shape[1])}
    print(f"tfidf: {rate:.0f} texts/s", flush=True)
    tmp.cleanup()

    base = rows[0]["texts_per_s"]
    passed = True
    for r in rows:
        r["speedup"] = r["texts_per_s"] / base
        target = TARGETS.get(r["model"])
        r["target"] = f">= {target:.0f}x" if target else ""
        if target:
            r["ok"] = "yes" if r["speedup"] >= target else "NO"
            passed &= r["speedup"] >= target
    print()
    _common.print_table(
        [{**r, "accuracy": f"{r['accuracy']:.3f}"} for r in rows],
        columns=["model", "texts_per_s", "speedup", "target", "ok", "params", "disk_MB", "accuracy"],
        floatfmt="{:.1f}",
    )
    print("(accuracy: on the 2,000 timed texts; the students saw only SST-2 train phrases, with gold labels)")
    _common.write_json(
        args.out,
        {
            "benchmark": NAME,
            "texts": f"sst2 dev.csv ({min(872, len(texts))}) + first {max(0, len(texts) - 872)} rows of test.csv",
            "n_texts": len(texts),
            "n_train": len(train_x),
            "repeats": args.repeats,
            "rows": rows,
            "details": details,
            "targets": TARGETS,
            "passed": bool(passed),
        },
    )
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
