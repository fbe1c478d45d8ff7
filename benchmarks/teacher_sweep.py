"""A small sweep of TransformerClassifier settings on small labeled sets, per data set.

The question (issue 9): does ``TransformerClassifier()`` with its defaults get,
within the noise, the best result a short sweep finds on a small labeled set?
Each run fine-tunes one teacher per configuration on ``--n-labeled`` texts drawn
(stratified, seeded) from the train split of one data set, and scores it on
the test split (stratified sample of ``--max-test`` texts):

- ``v0_default``: the defaults before issue 9 (``pooling="cls", epochs=3,
  learning_rate=5e-5, class_weight=None``; rows measured as ``default``
  before the change were renamed to this);
- ``default``: ``TransformerClassifier()`` as a new user calls it (since
  issue 9 the settings of ``mean_auto_balanced`` on every set here, as both
  checkpoints resolve ``pooling="auto"`` to mean pooling; rows
  ``default_quarter_patience`` in the JSON measured a withdrawn rule, a
  patience of a quarter of the planned epochs);
- ``mean``: ``pooling="mean"`` (how all-MiniLM-L6-v2 and e5 were trained);
- ``mean_auto``: ``pooling="mean", epochs="auto", learning_rate=1e-4``
  (about 600 optimizer steps, early stopping on the validation split);
- ``cls_auto``: ``epochs="auto", learning_rate=1e-4`` with the default head;
- ``mean_auto_head``: ``mean_auto`` with ``head_learning_rate=1e-3``;
- ``mean_auto_balanced``: ``mean_auto`` with ``class_weight="balanced"``;
- ``mean_auto_balanced_noes``: that without early stopping (all epochs run,
  the best on the validation split restored).

Metric: accuracy (sst2, imdb, banking77), macro-F1 (goemotions_ekman), F1 of
class 1 (ru_toxic, germeval2018); with one bootstrap standard error (200
resamples). Also: accuracy on its own training texts, mean top-class
probability on the test texts (a flat, unsure teacher shows here), epochs
run and fit seconds. English sets use all-MiniLM-L6-v2; ru_toxic and
germeval2018 use a multilingual-e5-small folder (``--e5`` or ``$KDTEXT_E5``,
built by ``../shared/tools/build_multilingual_e5.py``) with frozen word
embeddings.

Results merge into ``benchmarks/results/teacher_sweep_<set>.json`` (rows keyed
by configuration, n_labeled and seed), so runs add up across sessions::

    python benchmarks/teacher_sweep.py --set banking77 --n-labeled 1000
    python benchmarks/teacher_sweep.py --set ru_toxic --n-labeled 1000 --e5 /path/to/e5
    python benchmarks/teacher_sweep.py --table      # markdown summary over every set (1,000 labeled)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import RESULTS_DIR, data_dir, machine_info, print_table  # noqa: E402

SETS = ("sst2", "imdb", "ru_toxic", "banking77", "goemotions_ekman", "germeval2018")
MULTILINGUAL = ("ru_toxic", "germeval2018")
METRIC = {"sst2": "accuracy", "imdb": "accuracy", "banking77": "accuracy", "goemotions_ekman": "macro_f1",
          "ru_toxic": "f1", "germeval2018": "f1"}
_AUTO = {"epochs": "auto", "learning_rate": 1e-4}
CONFIGS: dict[str, dict[str, Any]] = {
    "v0_default": {"pooling": "cls", "epochs": 3, "learning_rate": 5e-5, "class_weight": None},
    "default": {},
    "mean": {"pooling": "mean"},
    "mean_auto": {"pooling": "mean", **_AUTO},
    "cls_auto": dict(_AUTO),
    "mean_auto_head": {"pooling": "mean", **_AUTO, "head_learning_rate": 1e-3},
    "mean_auto_balanced": {"pooling": "mean", **_AUTO, "class_weight": "balanced"},
    "mean_auto_balanced_noes": {"pooling": "mean", **_AUTO, "class_weight": "balanced", "n_iter_no_change": None},
}


def load_split(name: str, data: Path, split: str):
    import pandas as pd

    df = pd.read_csv(data / name / f"{split}.csv")
    return df["text"].astype(str).tolist(), df["label"].to_numpy()


def stratified_sample(y: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` indices, each class in proportion and at least 2 (where it has them)."""
    if n >= len(y):
        return np.arange(len(y))
    classes, counts = np.unique(y, return_counts=True)
    take = np.maximum(np.minimum(2, counts), np.floor(counts * n / len(y)).astype(int))
    while take.sum() < n:  # hand out what rounding left, largest remainders first
        rem = counts * n / len(y) - take
        rem[take >= counts] = -np.inf
        take[int(np.argmax(rem))] += 1
    idx = [rng.choice(np.flatnonzero(y == c), size=k, replace=False) for c, k in zip(classes, take)]
    return np.sort(np.concatenate(idx))


def metric(name: str, y_true: np.ndarray, y_pred: np.ndarray) -> float:
    from sklearn.metrics import accuracy_score, f1_score

    kind = METRIC[name]
    if kind == "accuracy":
        return float(accuracy_score(y_true, y_pred))
    if kind == "macro_f1":
        return float(f1_score(y_true, y_pred, average="macro"))
    return float(f1_score(y_true, y_pred, pos_label=1))


def bootstrap_se(name: str, y_true: np.ndarray, y_pred: np.ndarray, seed: int = 0, n: int = 200) -> float:
    rng = np.random.default_rng(seed)
    vals = [metric(name, y_true[i], y_pred[i]) for i in (rng.integers(0, len(y_true), len(y_true)) for _ in range(n))]
    return float(np.std(vals, ddof=1))


def run_config(name: str, cfg_name: str, X_l, y_l, X_t, y_t, args) -> dict[str, Any]:
    from kdtext import TransformerClassifier

    params = dict(CONFIGS[cfg_name])
    model = None
    if name in MULTILINGUAL:
        model = args.e5 or os.environ.get("KDTEXT_E5")
        params.setdefault("freeze_embeddings", True)
    clf = TransformerClassifier(model, random_state=args.seed, device="cpu", **params)
    t0 = time.perf_counter()
    clf.fit(X_l, y_l)
    fit_s = time.perf_counter() - t0
    proba = clf.predict_proba(X_t)
    pred = clf.classes_[np.argmax(proba, axis=1)]
    train_pred = clf.predict(X_l)
    return {
        "config": cfg_name, "params": CONFIGS[cfg_name], "metric": METRIC[name],
        "score": metric(name, y_t, pred), "stderr": bootstrap_se(name, y_t, pred, seed=args.seed),
        "train_accuracy": float(np.mean(train_pred == y_l)),
        "mean_top_proba": float(proba.max(axis=1).mean()),
        "epochs_run": int(clf.n_iter_), "best_epoch": int(clf.best_epoch_),
        "pooling": getattr(clf, "pooling_", None), "fit_seconds": round(fit_s, 1),
        "valid_scores": [round(float(h["valid_score"]), 4) for h in clf.history_ if "valid_score" in h],
    }


#: the configuration with the settings of ``TransformerClassifier()`` since issue 9 (on these sets both checkpoints
#: resolve pooling="auto" to mean pooling): shown in the ``default`` column where that was not rerun
SAME_AS_DEFAULT = "mean_auto_balanced"


def markdown_table(out_dir: Path, n_labeled: int = 1000) -> str:
    """One row per data set, one column per configuration, from every teacher_sweep_*.json."""
    lines = [f"{n_labeled:,} labeled texts:", "",
             "| set (metric) | " + " | ".join(CONFIGS) + " |", "|---" * (len(CONFIGS) + 1) + "|"]
    for name in SETS:
        f = out_dir / f"teacher_sweep_{name}.json"
        if not f.is_file():
            continue
        rows = {r["config"]: r for r in json.loads(f.read_text())["rows"] if r.get("n_labeled") == n_labeled and "score" in r}
        best = max((r["score"] for r in rows.values()), default=None)
        cells = []
        for c in CONFIGS:
            r = rows.get(c)
            if r is None and c == "default" and SAME_AS_DEFAULT in rows:
                cells.append(f"= {SAME_AS_DEFAULT}")
                continue
            cells.append("" if r is None else (f"**{r['score']:.3f}**" if r["score"] == best else f"{r['score']:.3f}")
                         + ("" if r is None else f" ± {r['stderr']:.3f}"))
        lines.append(f"| {name} ({METRIC[name]}) | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    if argv is None:
        argv = sys.argv[1:]
    if "--table" in argv:  # print the summary over every set and stop
        out_dir = Path(argv[argv.index("--out-dir") + 1]) if "--out-dir" in argv else RESULTS_DIR
        sizes = sorted({r.get("n_labeled") for f in out_dir.glob("teacher_sweep_*.json")
                        for r in json.loads(f.read_text())["rows"] if r.get("n_labeled")})
        print("\n\n".join(markdown_table(out_dir, n) for n in sizes))
        return 0
    parser.add_argument("--set", required=True, choices=SETS)
    parser.add_argument("--n-labeled", type=int, default=1000)
    parser.add_argument("--max-test", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--configs", default=",".join(CONFIGS), help="comma-separated, from: " + ", ".join(CONFIGS))
    parser.add_argument("--data", default=None)
    parser.add_argument("--e5", default=None, help="multilingual-e5-small folder for ru_toxic / germeval2018")
    parser.add_argument("--out-dir", default=str(RESULTS_DIR))
    args = parser.parse_args(argv)
    name = args.set
    if name in MULTILINGUAL and not (args.e5 or os.environ.get("KDTEXT_E5")):
        print(f"{name} needs a multilingual teacher: pass --e5 or set KDTEXT_E5 (see the docstring)", file=sys.stderr)
        return 2
    data = data_dir(args.data)
    X, y = load_split(name, data, "train")
    X_test, y_test = load_split(name, data, "test")
    rng = np.random.default_rng(args.seed)
    li = stratified_sample(y, args.n_labeled, rng)
    ti = stratified_sample(y_test, args.max_test, np.random.default_rng(args.seed + 1))
    X_l, y_l = [X[i] for i in li], y[li]
    X_t, y_t = [X_test[i] for i in ti], y_test[ti]

    out = Path(args.out_dir) / f"teacher_sweep_{name}.json"
    result = json.loads(out.read_text()) if out.is_file() else {"set": name, "rows": []}
    for cfg in [c for c in args.configs.split(",") if c]:
        print(f"[{time.strftime('%H:%M:%S')}] {name} n={args.n_labeled} {cfg} ...", file=sys.stderr, flush=True)
        try:
            row = run_config(name, cfg, X_l, y_l, X_t, y_t, args)
        except Exception as exc:  # keep the run: record the error
            row = {"config": cfg, "error": f"{type(exc).__name__}: {exc}"}
        row.update(n_labeled=args.n_labeled, seed=args.seed, n_test=len(y_t))
        result["rows"] = [r for r in result["rows"]
                          if (r.get("config"), r.get("n_labeled"), r.get("seed")) != (cfg, args.n_labeled, args.seed)]
        result["rows"].append(row)
        result["machine"] = machine_info()
        result["command"] = "python benchmarks/teacher_sweep.py " + " ".join(argv if argv is not None else sys.argv[1:])
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2))
        print(f"  {row}", file=sys.stderr, flush=True)
    rows = sorted((r for r in result["rows"] if "score" in r), key=lambda r: (r["n_labeled"], -r["score"]))
    print_table([{k: r.get(k) for k in ("n_labeled", "config", "score", "stderr", "train_accuracy", "mean_top_proba",
                                        "epochs_run", "fit_seconds")} for r in rows], floatfmt="{:.3f}")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
