"""Alpha sweep: how much weight should gold labels get? (the Russian tutorial's plot, in kdtext)

Distils the SST-2 MiniLM teacher that ``distill_sst2.py`` used before issue 9 (3 epochs, lr 5e-5, [CLS] pooling:
``make_teacher_before_issue9``; cached in ``benchmarks/.cache/distill_sst2-teacher-before-issue9``) into a BiLSTM with ``loss="kl"``, T=2, and alpha in 0, 0.25, 0.5, 0.75, 1
(``alpha * CE(gold) + (1 - alpha) * KL``; alpha = 1 ignores the teacher on labeled texts and learns nothing from
unlabeled ones). Each run trains a fixed number of epochs; the plot shows the student's validation score per epoch
(accuracy on its held-out share of the transfer set, against the gold label where there is one and the teacher's
label otherwise), and the table the final SST-2 dev accuracy.

    pip install "kdtext[plot]"
    python benchmarks/alpha_sweep.py           # writes results/alpha_sweep.json and results/alpha_sweep.png
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
from sklearn.metrics import accuracy_score

from _common import RESULTS_DIR, add_common_args, print_table, write_json
from _distill import CACHE, load_or_fit_teacher
from distill_sst2 import make_teacher_before_issue9, split


def main() -> None:
    parser = add_common_args(argparse.ArgumentParser(description=__doc__.splitlines()[0]), "alpha_sweep")
    parser.add_argument("--cache", default=str(CACHE), help="teacher and teacher-output cache (default: %(default)s)")
    parser.add_argument("--alphas", default="0,0.25,0.5,0.75,1")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--n-labeled", type=int, default=8000)
    parser.add_argument("--n-unlabeled", type=int, default=30000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--png", default=str(RESULTS_DIR / "alpha_sweep.png"))
    args = parser.parse_args()

    from pathlib import Path

    from kdtext import BiLSTMClassifier, DistillationClassifier

    lab, unl, dev = split(args.data, args.seed, args.n_labeled, args.n_unlabeled)
    cache = Path(args.cache)
    teacher, _, _ = load_or_fit_teacher(
        lambda: make_teacher_before_issue9(args.seed),
        lab["text"].tolist(), lab["label"].to_numpy(), cache / "distill_sst2-teacher-before-issue9", retrain=False,
    )
    teacher_acc = accuracy_score(dev["label"], teacher.predict(dev["text"].tolist()))
    X_all = lab["text"].tolist() + unl["text"].tolist()
    y_all = np.concatenate([lab["label"].to_numpy(), np.full(len(unl), -1)])

    rows, curves = [], {}
    for alpha in [float(a) for a in args.alphas.split(",")]:
        student = BiLSTMClassifier(epochs=args.epochs, n_iter_no_change=None, random_state=args.seed)
        kd = DistillationClassifier(teacher, student, loss="kl", temperature=2.0, alpha=alpha, augment=0,
                                    memory=cache / "distill_sst2-teacher-before-issue9-outputs")
        kd.fit(X_all, y_all)
        acc = accuracy_score(dev["label"], kd.predict(dev["text"].tolist()))
        curves[alpha] = [h["valid_score"] for h in kd.history_]
        rows.append({"alpha": alpha, "dev accuracy": acc, "vs teacher": acc / teacher_acc,
                     "best epoch": kd.student_.best_epoch_, "fidelity": kd.fidelity_})
        print_table(rows[-1:], floatfmt="{:.4f}")
    print()
    print_table(rows, floatfmt="{:.4f}")
    print(f"teacher dev accuracy {teacher_acc:.4f}")

    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed (pip install 'kdtext[plot]'): no plot written")
    else:
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for alpha, curve in curves.items():
            ax.plot(range(1, len(curve) + 1), curve, marker="o", label=f"alpha={alpha:g}")
        ax.set_xlabel("epoch")
        ax.set_ylabel("validation score (held-out transfer texts)")
        ax.set_title(f"BiLSTM distilled from MiniLM on SST-2 (KL, T=2); teacher dev acc {teacher_acc:.3f}")
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        Path(args.png).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(args.png, dpi=120)
        print(f"wrote {args.png}")
    write_json(args.out, {"benchmark": "alpha_sweep", "teacher_dev_accuracy": teacher_acc, "rows": rows,
                          "curves": {str(k): v for k, v in curves.items()}, "png": str(args.png)})


if __name__ == "__main__":
    main()
