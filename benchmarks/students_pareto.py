"""Which student to deploy: every student kind distilled from one teacher, accuracy against speed, size and memory.

The students, all distilled with kdtext's defaults from the same fine-tuned teacher on the same labeled +
transfer texts (the teacher labels each distinct text once, cached in ``--cache``):

- ``tfidf+lr``: TF-IDF + LogisticRegression (the "hard" route), ``tfidf+ridge``: TF-IDF + Ridge on logits;
- ``bilstm``: ``BiLSTMClassifier()``; ``static``: ``StaticEmbeddingClassifier(<teacher folder>)``;
- ``transformer-3l``: ``shrink_transformer(teacher, layers=3, texts=...)`` fine-tuned as a
  ``TransformerClassifier`` student (slow to train: opt in with ``--rows``);
- each neural student (and the teacher) also exported with ``export_onnx`` and served by ``OnnxClassifier``
  (rows ``... (onnx)``); the teacher's int8 export where ``export_onnx`` offers ``quantize="int8"``.

Measured per row, side by side in one process on the evaluation texts (each timing after waiting, up to
``--wait`` s, for other processes to leave the CPUs idle; the busy share seen is recorded): the metric; batched texts/s
(``predict_proba`` on the evaluation texts, repeated until a pass takes a second, best of 2); single-text
texts/s (one ``predict_proba([text])`` call per text on 200 texts, the reciprocal of the median latency); size on
disk (the ``save_pretrained`` folder, the ONNX folder, or the pickle); peak memory of serving (a fresh Python
process loads the saved student and calls ``predict`` on the evaluation texts; its peak resident set size, so the
interpreter and the libraries it imports count: torch for kdtext estimators, not for ONNX or scikit-learn).

Data: ``--set sst2``: the ``distill_sst2.py`` split and teacher (MiniLM, kdtext's defaults; 8,000 labeled,
``--n-unlabeled`` transfer texts, dev.csv), loaded from ``--cache`` (``distill_sst2-teacher``, saved by that
script) or fitted and saved there; ``--set ru_toxic``: the ``robustness.py`` split (1,000 labeled, up to 4,000
transfer texts, 1,000 test texts) and the multilingual-e5-small teacher that script saved beside its logit
cache.

    python benchmarks/students_pareto.py --set sst2 --n-unlabeled 30000
    python benchmarks/students_pareto.py --set sst2 --rows tfidf+lr,static,static (onnx)
    python benchmarks/students_pareto.py --plot          # results/students_pareto.png from every JSON

Writes ``results/students_pareto_<set>.json`` and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np

from _common import RESULTS_DIR, data_dir, machine_info, print_table, wait_for_idle_cpu, write_json
from _distill import CACHE, load_or_fit_teacher, throughput

ROWS = ["teacher", "teacher (onnx)", "teacher (onnx int8)", "tfidf+lr", "tfidf+ridge", "bilstm", "bilstm (onnx)",
        "static", "static (onnx)", "transformer-3l", "transformer-3l (onnx)"]
DEFAULT_ROWS = [r for r in ROWS if not r.startswith("transformer-3l")]
SINGLE_TEXTS = 200


def _sst2(args):
    """distill_sst2.py's split (8,000 labeled, ``--n-unlabeled`` transfer texts, dev.csv) and its teacher."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.metrics import accuracy_score

    from distill_sst2 import make_teacher, split

    lab, unl, dev = split(args.data, args.seed, 8000, args.n_unlabeled)
    return dict(X_lab=lab["text"].tolist(), y_lab=lab["label"].to_numpy(), X_unl=unl["text"].tolist(),
                X_eval=dev["text"].tolist(), y_eval=dev["label"].to_numpy(), metric=accuracy_score,
                metric_name="accuracy", teacher_folder=args.cache / "distill_sst2-teacher",
                make_teacher=lambda: make_teacher(args.seed),
                tfidf=lambda: TfidfVectorizer(ngram_range=(1, 2), min_df=1, sublinear_tf=True),
                memory=args.cache / "distill_sst2-teacher-outputs",  # shared with distill_sst2.py
                split="distill_sst2.py: 8,000 labeled train texts, dev.csv")


#: the teacher parameters of the robustness.py rows whose saved teachers this script reuses
E5_TEACHER = {"pooling": "mean", "epochs": "auto", "learning_rate": 0.0001, "class_weight": "balanced",
              "freeze_embeddings": True}


def _ru_toxic(args):
    """robustness.py's ru_toxic split (1,000 labeled, ``--n-unlabeled`` transfer texts, 1,000 test texts) and the
    e5 teacher it saved beside its logit cache (run robustness.py for ru_toxic first)."""
    from sklearn.metrics import f1_score

    import robustness as rb
    from distill_ru_toxic import tfidf

    n = min(args.n_unlabeled, 4000)
    sp = rb.Split(data_dir(args.data), "ru_toxic", 1000, n, args.seed, 1000)
    key = rb.teacher_cache_key("ru_toxic", 1000, args.seed, rb.TEACHER_MODELS["e5"], E5_TEACHER)
    folder = rb.teacher_folder(rb.cache_path(args.cache, key))
    if not folder.is_dir():
        sys.exit(f"{folder} does not exist: fit it with python benchmarks/robustness.py --set ru_toxic "
                 f"--n-labeled 1000 --rows teacher --teacher-params '{json.dumps(E5_TEACHER)}'")
    return dict(X_lab=sp.X_lab, y_lab=sp.y_lab, X_unl=sp.X_unl, X_eval=sp.X_test, y_eval=sp.y_test,
                metric=lambda y, p: f1_score(y, p, pos_label=1), metric_name="f1", teacher_folder=folder,
                make_teacher=None, tfidf=tfidf, memory=args.cache / "students_pareto-ru_toxic-teacher-outputs",
                split=f"robustness.py: 1,000 labeled, {n} transfer, 1,000 test texts")


SETS = {"sst2": _sst2, "ru_toxic": _ru_toxic}


# ------------------------------------------------------------------------------------- serving
def save(est: Any, folder: Path) -> tuple[str, Path]:
    """Write what would be deployed: (kind, path) for :func:`serve`."""
    from kdtext import OnnxClassifier
    from kdtext._neural import NeuralTextClassifier

    target = getattr(est, "student_", est)
    if isinstance(target, OnnxClassifier):
        return "onnx", Path(target.path)
    if isinstance(target, NeuralTextClassifier):
        target.save_pretrained(folder)
        return f"kdtext:{type(target).__name__}", folder
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.pkl").write_bytes(pickle.dumps(target))
    return "pickle", folder / "model.pkl"


def disk_mb(path: Path) -> float:
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    return sum(p.stat().st_size for p in files) / 2**20


def serve(kind: str, path: str, texts_file: str) -> dict:
    """In this (fresh) process: load the saved student, predict the texts; peak RSS in MB."""
    texts = json.loads(Path(texts_file).read_text(encoding="utf-8"))
    t0 = time.perf_counter()
    if kind == "onnx":
        from kdtext.onnx import OnnxClassifier

        est = OnnxClassifier.from_pretrained(path)
    elif kind == "pickle":
        est = pickle.loads(Path(path).read_bytes())
    else:
        import kdtext

        est = getattr(kdtext, kind.split(":", 1)[1]).from_pretrained(path, device="cpu")
    load_s = time.perf_counter() - t0
    est.predict(texts)  # what a deployed model is asked (a Ridge student has no predict_proba)
    return {"peak_rss_mb": _peak_rss_mb(), "load_s": load_s, "torch_imported": "torch" in sys.modules}


def _peak_rss_mb() -> float:
    """This process's peak resident set (VmHWM). Not ``getrusage``'s ru_maxrss: Linux carries that over from the
    parent across fork and exec, so a child of a large process reports the parent's peak."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def serve_in_subprocess(kind: str, path: Path, texts_file: Path) -> dict:
    out = subprocess.run([sys.executable, __file__, "--serve", kind, str(path), str(texts_file)],
                         capture_output=True, text=True, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    if out.returncode:
        return {"peak_rss_mb": None, "error": out.stderr.strip().splitlines()[-1] if out.stderr else "failed"}
    return json.loads(out.stdout.strip().splitlines()[-1])


def single_text_rate(est: Any, texts: list[str]) -> float:
    """1 / median seconds of ``predict_proba([text])``."""
    picked = texts[:SINGLE_TEXTS]
    est.predict_proba(picked[:1])
    times = []
    for t in picked:
        t0 = time.perf_counter()
        est.predict_proba([t])
        times.append(time.perf_counter() - t0)
    return 1.0 / float(np.median(times))


# ------------------------------------------------------------------------------------- the run
def run(args) -> None:
    from kdtext import TransformerClassifier

    d = SETS[args.set](args)
    wanted = DEFAULT_ROWS if args.rows == "default" else (ROWS if args.rows == "all" else args.rows.split(","))
    unknown = sorted(set(wanted) - set(ROWS))
    if unknown:
        sys.exit(f"unknown rows {unknown}; choose from {ROWS}")
    if args.merge and "teacher" not in wanted:  # checked before hours of fitting, again in merge_runs
        sys.exit("--merge needs the teacher row in --rows: each row's speedup is over the teacher of its own run")
    folder = d["teacher_folder"]
    if d["make_teacher"] is None:
        teacher, teacher_fit_s, loaded = TransformerClassifier.from_pretrained(folder), None, True
    else:
        teacher, teacher_fit_s, loaded = load_or_fit_teacher(d["make_teacher"], d["X_lab"], d["y_lab"], folder, False)
    work = Path(tempfile.mkdtemp(prefix="pareto-"))
    try:
        _run_rows(args, d, wanted, teacher, teacher_fit_s, loaded, folder, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _run_rows(args, d, wanted, teacher, teacher_fit_s, loaded, folder, work) -> None:
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.pipeline import make_pipeline

    from kdtext import BiLSTMClassifier, DistillationClassifier, OnnxClassifier, StaticEmbeddingClassifier, \
        TransformerClassifier

    X_all = d["X_lab"] + d["X_unl"]
    y_all = np.concatenate([d["y_lab"], np.full(len(d["X_unl"]), -1)])
    memory = d["memory"]  # each distinct text is labeled once, across runs
    X_eval, y_eval = d["X_eval"], d["y_eval"]
    texts_file = work / "texts.json"
    texts_file.write_text(json.dumps(X_eval, ensure_ascii=False), encoding="utf-8")
    rows: list[dict] = []
    fitted: dict[str, Any] = {"teacher": teacher}
    teacher_pred = teacher.predict(X_eval)

    def kd(student):  # augment=0, the default until 2026-12-03, for every student kind alike
        return DistillationClassifier(teacher, student, memory=memory, augment=0, random_state=args.seed)

    def make(name: str):
        """(estimator, fit seconds) for a row."""
        if name == "teacher":
            return teacher, teacher_fit_s
        if name.endswith("(onnx int8)") or name.endswith("(onnx)"):
            base = fitted.get(name.split(" (")[0])
            if base is None:
                raise RuntimeError(f"{name} needs the row {name.split(' (')[0]!r} in --rows")
            neural = getattr(base, "student_", base)
            kw = {"quantize": "int8"} if name.endswith("int8)") else {}
            t0 = time.perf_counter()
            path = neural.export_onnx(work / name.replace(" ", "_").replace("(", "").replace(")", ""), **kw)
            return OnnxClassifier.from_pretrained(path), time.perf_counter() - t0
        students = {
            "tfidf+lr": lambda: make_pipeline(d["tfidf"](), LogisticRegression(max_iter=2000, C=4.0)),
            "tfidf+ridge": lambda: make_pipeline(d["tfidf"](), Ridge(alpha=1.0)),
            "bilstm": lambda: BiLSTMClassifier(random_state=args.seed),
            "static": lambda: StaticEmbeddingClassifier(str(folder), random_state=args.seed),
        }
        if name == "transformer-3l":
            from kdtext import shrink_transformer

            small = shrink_transformer(str(folder), work / "shrunk-3l", layers=3, texts=X_all)
            students[name] = lambda: TransformerClassifier(str(small), random_state=args.seed)
        est = kd(students[name]())
        t0 = time.perf_counter()
        est.fit(X_all, y_all)
        return est, time.perf_counter() - t0

    for name in [r for r in ROWS if r in wanted]:
        print(f"--- {name}", flush=True)
        try:
            est, fit_s = make(name)
        except Exception as exc:  # recorded, the run goes on
            rows.append({"row": name, "error": f"{type(exc).__name__}: {exc}"})
            print(f"{name}: {type(exc).__name__}: {exc}", flush=True)
            continue
        fitted[name] = est
        pred = est.predict(X_eval)
        kind, path = save(est, work / f"saved-{len(rows)}")
        served = serve_in_subprocess(kind, path, texts_file)
        busy = wait_for_idle_cpu(timeout=args.wait) if args.wait else None
        batched = throughput(est, X_eval)
        single = single_text_rate(est, X_eval)
        row = {
            "row": name,
            d["metric_name"]: float(d["metric"](y_eval, pred)),
            "texts/s": batched,
            "single texts/s": single,
            "cpu_busy_before": busy,
            "disk MB": disk_mb(path),
            "peak MB": served.get("peak_rss_mb"),
            "torch at serving": served.get("torch_imported"),
            "fit s": fit_s,
            "fidelity": getattr(est, "fidelity_", None),
            "agreement with teacher": float(np.mean(pred == teacher_pred)),
        }
        if "error" in served:
            row["serve_error"] = served["error"]
        rows.append(row)
        print_table([row], floatfmt="{:.3f}")
    by = {r["row"]: r for r in rows if "error" not in r}
    if "teacher" in by:
        for r in rows:
            if "error" not in r:
                r["vs teacher"] = r[d["metric_name"]] / by["teacher"][d["metric_name"]]
                r["speedup"] = r["texts/s"] / by["teacher"]["texts/s"]
                r["single speedup"] = r["single texts/s"] / by["teacher"]["single texts/s"]
    cols = ["row", d["metric_name"], "vs teacher", "texts/s", "speedup", "single texts/s", "single speedup",
            "disk MB", "peak MB", "torch at serving", "fit s"]
    table = print_table([r for r in rows if "error" not in r], columns=cols, floatfmt="{:.3f}")
    result = {"benchmark": "students_pareto", "set": args.set, "metric": d["metric_name"],
              "n_labeled": len(d["X_lab"]), "n_unlabeled": len(d["X_unl"]), "n_eval": len(X_eval),
              "split": d["split"],
              "teacher_loaded_from_cache": loaded, "rows": rows, "table": table, "machine": machine_info()}
    out = args.out_dir / f"students_pareto_{args.set}.json"
    if args.merge and out.exists():
        result = merge_runs(json.loads(out.read_text(encoding="utf-8")), result, "python " + " ".join(sys.argv))
    write_json(out, result)


def merge_runs(old: dict, new: dict, command: str) -> dict:
    """``old``'s rows followed by ``new``'s, each row tagged with its ``run`` (listed in ``runs``).

    Speeds are only comparable within one run, so every row keeps its ``speedup`` over the teacher timed in the same
    run, and a run to merge must time the teacher too.
    """
    if not any(r["row"] == "teacher" for r in new["rows"]):
        sys.exit("--merge needs the teacher row in --rows: each row's speedup is over the teacher of its own run")
    runs = old.get("runs") or [{"command": old.get("command"), "machine": old.get("machine"), "table": old.get("table")}]
    rows = [{**r, "run": r.get("run", 0)} for r in old["rows"]]
    runs.append({"command": command, "machine": new["machine"], "table": new["table"]})
    rows += [{**r, "run": len(runs) - 1} for r in new["rows"]]
    return {**new, "rows": rows, "runs": runs, "table": "\n\n".join(str(r["table"]) for r in runs)}


def plot(out_dir: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = sorted(out_dir.glob("students_pareto_*.json"))
    if not files:
        sys.exit(f"no students_pareto_*.json in {out_dir}")
    fig, axes = plt.subplots(1, len(files), figsize=(6.5 * len(files), 4.8), squeeze=False)
    for ax, f in zip(axes[0], files):
        res = json.loads(f.read_text())
        m = res["metric"]
        for r in [r for r in res["rows"] if "error" not in r]:
            onnx = "(onnx" in r["row"]
            if r["row"] == "teacher" and r.get("run", 0):
                continue  # the teacher of a merged run: at 1x, as the first run's
            ax.scatter(r["speedup"], r[m], marker="s" if onnx else "o", s=40,
                       color="black" if r["row"].startswith("teacher") else None)
            ax.annotate(r["row"], (r["speedup"], r[m]), textcoords="offset points", xytext=(4, 4), fontsize=7)
        ax.set_xscale("log")
        ax.set_xlabel("batched texts/s over the teacher's, timed side by side in one run (log scale)")
        ax.set_ylabel(m)
        ax.set_title(f"{res['set']}: {res['n_labeled']} labeled + {res['n_unlabeled']} transfer texts")
        ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    out = out_dir / "students_pareto.png"
    fig.savefig(out, dpi=120)
    print(f"wrote {out}")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--serve":
        print(json.dumps(serve(*sys.argv[2:5])))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", choices=sorted(SETS))
    parser.add_argument("--rows", default="default", help=f"comma-separated subset of {ROWS}, 'default' (all but "
                        "the transformer-3l rows) or 'all'")
    parser.add_argument("--n-unlabeled", type=int, default=30000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", default=None)
    parser.add_argument("--cache", type=Path, default=CACHE)
    parser.add_argument("--out-dir", type=Path, default=RESULTS_DIR)
    parser.add_argument("--plot", action="store_true")
    parser.add_argument("--merge", action="store_true", help="add the rows to the set's JSON as one more run "
                        "(rows tagged with their run; needs the teacher row, as speeds compare within a run)")
    parser.add_argument("--wait", type=float, default=120, help="before each timing, wait up to this many s for "
                        "other processes to leave the CPUs idle (0: do not wait)")
    args = parser.parse_args()
    if args.set:
        run(args)
    if args.plot:
        plot(args.out_dir)
    if not args.set and not args.plot:
        parser.error("give --set and/or --plot")


if __name__ == "__main__":
    main()
