"""Distil MiniLM into 3-layer copies of itself on SST-2 (DistilBERT / TinyBERT initialisation).

The SST-2 teacher of ``distill_sst2.py`` (all-MiniLM-L6-v2, 6 layers, fine-tuned on 8,000 labeled sentences; reused
from ``benchmarks/.cache`` when that script has run, fitted otherwise) is shrunk with
``kdtext.shrink_transformer`` to 3 layers and the copy trained as a student:

- ``3 layers 0,2,4 (gold)``: every other layer (DistilBERT's choice), fine-tuned on the 8,000 gold labels only: the
  hard-label twin;
- ``3 layers 0,2,4 (kd mse)``: the same copy distilled with MSE on the teacher's logits over the 8,000 labeled +
  30,000 unlabeled sentences (alpha=0);
- ``3 layers 1,3,5 (kd mse)``: TinyBERT's uniform mapping (``layers=3``), distilled the same way;
- ``3 layers 0,2,4 + small vocab (kd mse)``: every other layer with the vocabulary cut to the pieces of the transfer
  set (``texts=``), as the rubert-tiny tutorial's 3-layer student was, distilled the same way.

Rows report dev accuracy (872 sentences), texts/s of ``predict_proba`` on the dev set (side by side with the
teacher, in one run), parameters and fit time.

    python benchmarks/shrink_sst2.py                  # about 30-40 minutes on 2 CPU cores
    python benchmarks/shrink_sst2.py --rows "3 layers 0,2,4 (kd mse)"
    python benchmarks/shrink_sst2.py --rows "3 layers 0,2,4 (gold); 3 layers 0,2,4 + small vocab (kd mse)" --out x.json
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
from sklearn.metrics import accuracy_score

from _common import add_common_args, print_table, write_json
from _distill import CACHE, load_or_fit_teacher, n_params, throughput
from distill_sst2 import make_teacher, split


def main() -> None:
    parser = add_common_args(argparse.ArgumentParser(description=__doc__.splitlines()[0]), "shrink_sst2")
    parser.add_argument("--cache", type=Path, default=CACHE, help="teacher and teacher-output cache (default: %(default)s)")
    parser.add_argument("--n-labeled", type=int, default=8000)
    parser.add_argument("--n-unlabeled", type=int, default=30000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--learning-rate", type=float, default=1e-4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rows", default="all", help="semicolon-separated subset of row names (they hold commas), or 'all'")
    args = parser.parse_args()

    from kdtext import DistillationClassifier, TransformerClassifier, shrink_transformer

    lab, unl, dev = split(args.data, args.seed, args.n_labeled, args.n_unlabeled)
    X_lab, y_lab = lab["text"].tolist(), lab["label"].to_numpy()
    X_dev, y_dev = dev["text"].tolist(), dev["label"].to_numpy()
    X_all = X_lab + unl["text"].tolist()
    y_all = np.concatenate([y_lab, np.full(len(unl), -1)])

    teacher, teacher_seconds, loaded = load_or_fit_teacher(
        lambda: make_teacher(args.seed), X_lab, y_lab, args.cache / "distill_sst2-teacher", retrain=False
    )
    t_acc = accuracy_score(y_dev, teacher.predict(X_dev))
    t_speed = throughput(teacher, X_dev, repeats=1)
    rows = [{
        "row": "teacher (6 layers)", "accuracy": t_acc, "vs teacher": 1.0, "texts/s": t_speed, "speedup": 1.0,
        "params": n_params(teacher), "fit s": teacher_seconds, "fidelity": None,
        "note": "loaded from cache" if loaded else "",
    }]
    print_table(rows, floatfmt="{:.4f}")

    def student(folder):
        return TransformerClassifier(
            folder, epochs=args.epochs, batch_size=32, learning_rate=args.learning_rate, random_state=args.seed,
            verbose=1,
        )

    wanted = None if args.rows == "all" else {r.strip() for r in args.rows.split(";")}
    plans = [  # name, layers, distil, reduce the vocabulary
        ("3 layers 0,2,4 (gold)", None, False, False),
        ("3 layers 0,2,4 (kd mse)", None, True, False),
        ("3 layers 1,3,5 (kd mse)", 3, True, False),
        ("3 layers 0,2,4 + small vocab (kd mse)", None, True, True),
    ]
    with tempfile.TemporaryDirectory(prefix="kdtext_shrink_") as tmp:
        for name, layers, distil, small_vocab in plans:
            if wanted is not None and name not in wanted:
                continue
            folder = shrink_transformer(teacher, Path(tmp) / name.split(" (")[0].replace(" ", "_").replace(",", ""),
                                        layers=layers, texts=X_all if small_vocab else None)
            t0 = time.perf_counter()
            if distil:
                est = DistillationClassifier(
                    teacher, student(folder), loss="mse", alpha=0.0, memory=args.cache / "distill_sst2-teacher-outputs",
                    augment=0, random_state=args.seed,
                ).fit(X_all, y_all)
            else:
                est = student(folder).fit(X_lab, y_lab)
            seconds = time.perf_counter() - t0
            acc = accuracy_score(y_dev, est.predict(X_dev))
            speed = throughput(est, X_dev, repeats=1)
            rows.append({
                "row": name, "accuracy": acc, "vs teacher": acc / t_acc, "texts/s": speed, "speedup": speed / t_speed,
                "params": n_params(est), "fit s": seconds, "fidelity": getattr(est, "fidelity_", None), "note": "",
            })
            print_table(rows[-1:], floatfmt="{:.4f}")

    print()
    table = print_table(rows, floatfmt="{:.3f}")
    by_row = {r["row"]: r for r in rows}
    checks = {}
    twin = by_row.get("3 layers 0,2,4 (gold)")
    for r in rows:
        if "(kd" in r["row"]:
            checks[f"{r['row']} keeps >= 97% of teacher"] = {"kept": r["vs teacher"], "ok": bool(r["vs teacher"] >= 0.97)}
            if twin is not None:
                gain = r["accuracy"] - twin["accuracy"]
                checks[f"{r['row']} beats the gold-label twin"] = {"gain": gain, "ok": bool(gain > 0)}
    for k, v in checks.items():
        print(("PASS " if v["ok"] else "FAIL ") + k, {a: round(b, 4) for a, b in v.items() if a != "ok"})
    write_json(args.out, {
        "benchmark": "shrink_sst2",
        "n_labeled": len(X_lab), "n_unlabeled": len(unl), "n_eval": len(X_dev),
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "rows": rows, "table": table, "checks": checks,
    })


if __name__ == "__main__":
    main()
