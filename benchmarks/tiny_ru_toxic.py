"""The Russian tutorial's tiny BERT, reproduced: a 3-layer, narrower student with the corpus vocabulary; F1 on ru_toxic.

Teacher: multilingual-e5-small fine-tuned on 4,000 labeled rows of ru_toxic/train.csv, exactly the teacher of
``distill_ru_toxic.py`` (the same split, cache folder and teacher-output memory, so either script reuses the other's
teacher). Student: ``shrink_transformer(teacher, layers=3, texts=<all transfer texts>, hidden_size=256,
num_attention_heads=8, intermediate_size=1024)``, then

- (a) ``logits``: distilled on the teacher's logits only (``DistillationClassifier(loss="mse")``);
- (b) ``hidden``: the same plus intermediate losses (``hidden_loss``, ``pooled_weight``), the teacher run beside it;
- (c) ``agnostic``: ``distill_encoder`` on the unlabeled texts first (the teacher has no MLM head, so hidden +
  pooled terms only), then (a) on the result.

Rows report F1 on ru_toxic/test.csv, the share of the teacher's F1, size on disk (the ``save_pretrained`` folder),
parameters, texts/s (teacher and students timed in one run) and training seconds, beside the tutorial's numbers
(rubert-tiny teacher F1 0.91, its 16 MB student 0.86). Each row is merged into the JSON as it finishes, so runs
with ``--rows`` add up.

    python benchmarks/tiny_ru_toxic.py [--rows teacher,logits,hidden,agnostic] [--teacher-model FOLDER]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from sklearn.metrics import f1_score

from _common import add_common_args, print_table, write_json
from _distill import add_args, disk_size, load_or_fit_teacher, n_params, throughput
from distill_ru_toxic import add_teacher_args, make_teacher, ru_toxic_split

TUTORIAL = {"teacher F1": 0.91, "student F1": 0.86, "student MB": 16, "share": 0.86 / 0.91}
ROWS = ("teacher", "logits", "hidden", "agnostic")


def main() -> None:
    parser = add_common_args(argparse.ArgumentParser(description=__doc__.splitlines()[0]), "tiny_ru_toxic")
    add_teacher_args(add_args(parser))
    parser.add_argument("--layers", type=int, default=3)
    parser.add_argument("--hidden-size", type=int, default=256)
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--intermediate-size", type=int, default=1024)
    parser.add_argument("--student-params", type=json.loads, default={},
                        help="JSON of TransformerClassifier parameters for the students")
    parser.add_argument("--hidden-params", type=json.loads, default={"hidden_loss": "mse", "pooled_weight": 1.0},
                        help="JSON of DistillationClassifier parameters of row (b) (default: %(default)s)")
    parser.add_argument("--encoder-params", type=json.loads, default={},
                        help="JSON of distill_encoder parameters of row (c)")
    args = parser.parse_args()
    wanted = ROWS if args.rows == "all" else tuple(args.rows.split(","))
    unknown = set(wanted) - set(ROWS)
    if unknown:
        sys.exit(f"unknown rows {sorted(unknown)}; choose from {ROWS}")
    if not os.path.isdir(args.teacher_model):
        sys.exit(f"{args.teacher_model} does not exist; build it first (see distill_ru_toxic.py's docstring).")

    import numpy as np

    from kdtext import DistillationClassifier, TransformerClassifier, distill_encoder, shrink_transformer

    lab, X_unl, test = ru_toxic_split(args.data, args.seed, args.n_labeled)
    X_lab, y_lab = lab["text"].tolist(), lab["label"].to_numpy()
    X_eval, y_eval = test["text"].tolist(), test["label"].to_numpy()
    X_all = X_lab + X_unl
    y_all = np.concatenate([y_lab, np.full(len(X_unl), -1)])
    # the distill_ru_toxic teacher and its output memory
    teacher, teacher_seconds, _ = load_or_fit_teacher(
        lambda: make_teacher(args.teacher_model, args.seed), X_lab, y_lab, args.cache / "distill_ru_toxic-teacher",
        args.retrain_teacher)
    memory = args.cache / "distill_ru_toxic-teacher-outputs"
    t_f1 = float(f1_score(y_eval, teacher.predict(X_eval)))
    X_speed = X_eval[:512]  # texts/s of teacher and students on the same 512 test texts
    t_speed = throughput(teacher, X_speed, repeats=1)
    t_disk = disk_size(teacher) / 2**20

    previous = json.loads(args.out.read_text()) if args.out.exists() else {}
    rows = {r["row"]: r for r in previous.get("rows", [])}
    rows["teacher"] = {"row": "teacher", "f1": t_f1, "share": 1.0, "disk MB": t_disk, "params": n_params(teacher),
                       "texts/s": t_speed, "speed-up": 1.0, "train s": teacher_seconds}

    shape = f"{args.layers}l-{args.hidden_size}h-{args.heads}a-{args.intermediate_size}i"
    folder = args.cache / f"tiny_ru_toxic-student-{shape}"
    if not folder.exists():
        shrink_transformer(teacher, folder, layers=args.layers, texts=X_all, hidden_size=args.hidden_size,
                           num_attention_heads=args.heads, intermediate_size=args.intermediate_size)

    def student(path):
        return TransformerClassifier(str(path), **{"max_length": 128, "random_state": args.seed, **args.student_params})

    def record(name: str, kd, seconds: float, note: str) -> None:
        f1 = float(f1_score(y_eval, kd.predict(X_eval)))
        speed = throughput(kd, X_speed, repeats=1)
        rows[name] = {"row": name, "f1": f1, "share": f1 / t_f1, "disk MB": disk_size(kd) / 2**20,
                      "params": n_params(kd), "texts/s": speed, "speed-up": speed / t_speed,
                      "teacher texts/s (same run)": t_speed, "train s": seconds, "fidelity": kd.fidelity_,
                      "student shape": shape, "note": note, "command": "python " + " ".join(sys.argv)}
        print_table([rows[name]], floatfmt="{:.4f}")
        save()

    def save() -> None:
        # rows another run wrote meanwhile (runs with other --rows may go side by side) are kept
        if args.out.exists():
            for r in json.loads(args.out.read_text()).get("rows", []):
                if r["row"] not in wanted and r["row"] != "teacher":
                    rows[r["row"]] = r
        order = [r for r in ROWS if r in rows]
        out = {"benchmark": "tiny_ru_toxic", "metric": "f1 (toxic = 1)",
               "n_labeled": len(X_lab), "n_unlabeled": len(X_unl), "n_eval": len(X_eval),
               "settings": {"student_shape": shape, "student_params": args.student_params,
                            "hidden_params": args.hidden_params, "encoder_params": args.encoder_params,
                            "seed": args.seed},
               "tutorial": TUTORIAL, "rows": [rows[r] for r in order],
               "targets": "disk MB <= teacher's / 8, F1 >= 97% of the teacher's, texts/s >= 2x the teacher's (issue 12)"}
        for r in out["rows"][1:]:
            r["meets targets"] = bool(r["disk MB"] <= t_disk / 8 and r["share"] >= 0.97 and r["speed-up"] >= 2)
        write_json(args.out, out)

    kd_common = dict(loss="mse", memory=memory, augment=0, random_state=args.seed)  # augment: the old default
    if "logits" in wanted:
        t0 = time.perf_counter()
        kd = DistillationClassifier(teacher, student(folder), **kd_common).fit(X_all, y_all)
        record("logits", kd, time.perf_counter() - t0, "(a) logits only, MSE")
    if "hidden" in wanted:
        t0 = time.perf_counter()
        kd = DistillationClassifier(teacher, student(folder), **kd_common, **args.hidden_params).fit(X_all, y_all)
        record("hidden", kd, time.perf_counter() - t0, f"(b) logits + {args.hidden_params}")
    if "agnostic" in wanted:
        t0 = time.perf_counter()
        encoder = args.cache / f"tiny_ru_toxic-encoder-{shape}"
        distill_encoder(teacher, folder, X_all, encoder, **{"random_state": args.seed, "verbose": 1,
                                                            **args.encoder_params})
        stage = time.perf_counter() - t0
        kd = DistillationClassifier(teacher, student(encoder), **kd_common).fit(X_all, y_all)
        record("agnostic", kd, time.perf_counter() - t0,
               f"(c) distill_encoder {args.encoder_params or 'defaults'} ({stage:.0f} s), then (a)")
    save()
    print_table([rows[r] for r in ROWS if r in rows], floatfmt="{:.4f}")


if __name__ == "__main__":
    main()
