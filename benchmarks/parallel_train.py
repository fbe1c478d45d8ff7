"""BiLSTM distillation in 1 process and in 2 torchrun processes: does the data-parallel fit give the same student?

The ru_toxic setting of ``distill_ru_toxic.py``: its multilingual-e5-small teacher and teacher-output memory
(``benchmarks/.cache``; run that script first), 4,000 labeled + 8,250 unlabeled texts, binary F1 (toxic = 1) on
``test.csv``. The student is ``BiLSTMClassifier(random_state=seed)`` distilled with ``DistillationClassifier(loss="mse",
memory=<teacher outputs>)``, so the teacher runs on nothing in either mode. Each mode runs in fresh subprocesses with
one torch thread per process:

- ``1 process``: ``python parallel_train.py --worker ...``;
- ``2 processes``: ``python -m torch.distributed.run --standalone --nproc_per_node 2 parallel_train.py --worker ...``
  (kdtext's fit splits every batch between the two processes through accelerate).

Rows: F1, test predictions agreeing with the 1-process student, the largest weight difference from it, the epoch
records (validation scores), training seconds. ``--dropout 0`` removes the one source of difference besides
summation order (each process draws the dropout masks of its own texts).

    python benchmarks/parallel_train.py [--dropout 0.2] [--teacher-model FOLDER]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from _common import add_common_args, print_table, write_json
from _distill import add_args
from distill_ru_toxic import add_teacher_args, ru_toxic_split


def worker(args) -> None:
    """One process of a mode: distil, then (rank 0) write weights and scores to ``args.work``."""
    import numpy as np
    import torch
    from sklearn.metrics import f1_score

    from kdtext import BiLSTMClassifier, DistillationClassifier, TransformerClassifier

    torch.set_num_threads(1)
    lab, X_unl, test = ru_toxic_split(args.data, args.seed, args.n_labeled)
    X_all = lab["text"].tolist() + X_unl
    y_all = np.concatenate([lab["label"].to_numpy(), np.full(len(X_unl), -1)])
    teacher = TransformerClassifier.from_pretrained(args.cache / "distill_ru_toxic-teacher", device="cpu")
    student = BiLSTMClassifier(dropout=args.dropout, random_state=args.seed, device="cpu")
    t0 = time.perf_counter()
    kd = DistillationClassifier(teacher, student, loss="mse", memory=args.cache / "distill_ru_toxic-teacher-outputs",
                                augment=0, random_state=args.seed).fit(X_all, y_all)  # augment: the old default
    seconds = time.perf_counter() - t0
    if int(os.environ.get("RANK", "0")) != 0:
        return
    world = int(os.environ.get("WORLD_SIZE", "1"))
    pred = kd.predict(test["text"].tolist())
    torch.save(kd.student_.model_.state_dict(), args.work / f"weights-{world}.pt")
    np.save(args.work / f"pred-{world}.npy", pred)
    (args.work / f"result-{world}.json").write_text(json.dumps({
        "f1": float(f1_score(test["label"].to_numpy(), pred)), "train s": seconds,
        "teacher calls": int(kd.n_teacher_calls_), "epochs": int(kd.student_.n_iter_),
        "best epoch": int(kd.student_.best_epoch_),
        "valid scores": [r.get("valid_score") for r in kd.history_],
    }))


def main() -> None:
    parser = add_common_args(argparse.ArgumentParser(description=__doc__.splitlines()[0]), "parallel_train")
    add_teacher_args(add_args(parser))
    parser.add_argument("--dropout", type=float, default=0.2, help="the BiLSTM's dropout (its default: 0.2)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    if not (args.cache / "distill_ru_toxic-teacher-outputs").is_dir():
        sys.exit(f"no teacher outputs in {args.cache}: run benchmarks/distill_ru_toxic.py first.")

    import tempfile

    import numpy as np
    import torch

    work = Path(tempfile.mkdtemp(prefix="kdtext-parallel-"))
    here = Path(__file__).resolve()
    passthrough = ["--worker", "--work", str(work), "--cache", str(args.cache), "--seed", str(args.seed),
                   "--n-labeled", str(args.n_labeled), "--dropout", str(args.dropout)]
    if args.data is not None:
        passthrough += ["--data", str(args.data)]
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK")}
    env["OMP_NUM_THREADS"] = "1"
    modes = {1: [sys.executable, str(here)],
             2: [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(here)]}
    wall = {}
    for world, cmd in modes.items():
        print(f"{world} process(es): {' '.join(cmd[1:])}", flush=True)
        t0 = time.perf_counter()
        subprocess.run(cmd + passthrough, check=True, env=env, cwd=here.parent)
        wall[world] = time.perf_counter() - t0

    ref_w = torch.load(work / "weights-1.pt")
    ref_pred = np.load(work / "pred-1.npy")
    rows = []
    for world in modes:
        res = json.loads((work / f"result-{world}.json").read_text())
        w = torch.load(work / f"weights-{world}.pt")
        rows.append({"mode": f"{world} process" + ("es" if world > 1 else ""), "f1": res["f1"],
                     "agreement with 1 process": float(np.mean(np.load(work / f"pred-{world}.npy") == ref_pred)),
                     "max weight diff": max(float((w[k].double() - ref_w[k].double()).abs().max()) for k in w),
                     "epochs": res["epochs"], "best epoch": res["best epoch"], "valid scores": res["valid scores"],
                     "teacher calls": res["teacher calls"], "train s": res["train s"], "wall s": wall[world]})
    print_table(rows, columns=["mode", "f1", "agreement with 1 process", "max weight diff", "epochs", "best epoch",
                               "teacher calls", "train s", "wall s"], floatfmt="{:.4g}")
    out = args.out if args.dropout == 0.2 else args.out.with_name(f"{args.out.stem}-dropout{args.dropout:g}.json")
    write_json(out, {"benchmark": "parallel_train", "set": "ru_toxic", "metric": "f1 (toxic = 1)",
                     "student": f"BiLSTMClassifier(dropout={args.dropout}, random_state={args.seed})",
                     "threads per process": 1, "rows": rows})


if __name__ == "__main__":
    main()
