"""BiLSTMClassifier on Russian toxic comments (hard labels only).

Trains on ``ru_toxic/train.csv`` (early stopping on ``validation_fraction`` of
it), reports binary F1 of the toxic class (label 1) on ``test.csv`` and
``valid.csv``, prints a table and writes ``benchmarks/results/bilstm_ru_toxic.json``.
The Habr tutorial's BiLSTM scored F1 0.79 on this corpus; the target is >= 0.79.

    python benchmarks/bilstm_ru_toxic.py                 # defaults of BiLSTMClassifier
    python benchmarks/bilstm_ru_toxic.py --seeds 0 1 2   # spread across seeds
    python benchmarks/bilstm_ru_toxic.py --set tokenizer=unicode_bpe vocab_size=16000 pooling=last
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from _common import add_common_args, data_dir, print_table, write_json  # noqa: E402

TARGET_F1 = 0.79


def _parse_value(text: str):
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return {"None": None, "True": True, "False": False}.get(text, text)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_args(parser, "bilstm_ru_toxic")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="random_state values to run")
    parser.add_argument("--set", nargs="*", default=[], metavar="PARAM=VALUE", help="BiLSTMClassifier parameters")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args(argv)

    import numpy as np
    import pandas as pd
    import torch
    from sklearn.metrics import f1_score

    from kdtext.students import BiLSTMClassifier

    if args.threads:
        torch.set_num_threads(args.threads)

    folder = data_dir(args.data, "ru_toxic")
    train, valid, test = (pd.read_csv(folder / f"{s}.csv") for s in ("train", "valid", "test"))
    params = dict(p.split("=", 1) for p in args.set)
    params = {k: _parse_value(v) for k, v in params.items()}

    rows = []
    for seed in args.seeds:
        clf = BiLSTMClassifier(random_state=seed, device="cpu", **params)
        t0 = time.perf_counter()
        clf.fit(train["text"].tolist(), train["label"].to_numpy())
        fit_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        pred_test = clf.predict(test["text"].tolist())
        pred_s = time.perf_counter() - t0
        pred_valid = clf.predict(valid["text"].tolist())
        lengths = [len(s) for s in clf._encode(train["text"].tolist()[:2000])]
        rows.append(
            {
                "seed": seed,
                "f1_test": float(f1_score(test["label"], pred_test, pos_label=1)),
                "f1_valid": float(f1_score(valid["label"], pred_valid, pos_label=1)),
                "accuracy_test": float(np.mean(pred_test == test["label"].to_numpy())),
                "epochs_run": clf.n_iter_,
                "best_epoch": clf.best_epoch_,
                "vocab": clf.tokenizer_.get_vocab_size(),
                "mean_tokens": float(np.mean(lengths)),
                "fit_seconds": fit_s,
                "predict_texts_per_s": len(test) / pred_s,
            }
        )
        r = rows[-1]
        print(
            f"seed {seed}: F1 test {r['f1_test']:.4f}  valid {r['f1_valid']:.4f}  acc {r['accuracy_test']:.4f}  "
            f"epochs {r['epochs_run']} (best {r['best_epoch']})  vocab {r['vocab']}  "
            f"tokens/text {r['mean_tokens']:.1f}  fit {fit_s:.0f}s",
            flush=True,
        )

    f1s = np.array([r["f1_test"] for r in rows])
    print()
    table = [
        {
            "model": "BiLSTMClassifier " + (" ".join(args.set) or "(defaults)"),
            "seeds": len(rows),
            "F1 test (toxic=1)": f"{f1s.mean():.4f} ± {f1s.std():.4f}",
            "F1 valid": f"{np.mean([r['f1_valid'] for r in rows]):.4f}",
            "target": f"{TARGET_F1:.2f}",
        },
        {"model": "Habr tutorial BiLSTM (reference)", "F1 test (toxic=1)": "0.79"},
    ]
    print_table(table, columns=["model", "seeds", "F1 test (toxic=1)", "F1 valid", "target"])
    result = {
        "benchmark": "bilstm_ru_toxic",
        "data": str(folder),
        "train_rows": len(train),
        "test_rows": len(test),
        "params": {k: v for k, v in BiLSTMClassifier(**params).get_params().items() if k != "embeddings"},
        "runs": rows,
        "f1_test_mean": float(f1s.mean()),
        "f1_test_std": float(f1s.std()),
        "target_f1": TARGET_F1,
        "passed": bool(f1s.mean() >= TARGET_F1),
    }
    write_json(args.out, result)
    return result


if __name__ == "__main__":
    main()
