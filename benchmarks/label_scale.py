"""Soft-labeling a corpus with ``kdtext.label_texts``: one process, the embedded default, a Dask LocalCluster.

A real teacher, ``TransformerClassifier(None, epochs=1, validation_fraction=None,
random_state=0)`` (all-MiniLM-L6-v2, mean pooling) fitted on the first
``--teacher-train`` (500) SST-2 train rows and saved with ``save_pretrained``,
labels ``--n`` further SST-2 train texts (default 100,000: the 66,849 remaining
train rows, then the same rows again with " (2)", " (3)", ... appended, so every
text is distinct). The corpus is written to one Parquet file and read through
``TextFiles``, in shards of ``--shard-size`` texts, three ways, each into its
own fresh ``out`` folder:

(a) ``1 process x 1 thread``: ``label_texts(client=None)`` with
    ``torch.set_num_threads(1)``: the single-core baseline;
(b) ``embedded default``: ``label_texts(client=None)`` as it comes: in this
    process, torch using its default threads (all cores);
(c) ``dask 2 x 1``: ``label_texts(client=Client(LocalCluster(n_workers=2,
    threads_per_worker=1, processes=True)))``: the teacher sent once to
    each worker, shards as tasks; the cluster's start-up is timed apart, but
    the workers' first import of torch and unpickling of the teacher are in
    this row; ``dask 2 x 1, warm`` runs the same again on the same workers
    (into a fresh folder), which is the steady per-worker rate.

The logits of the three must agree within 1e-5 (max absolute difference over
every text; exit code 1 if not).

Kill and resume: a child process (``--child``, the teacher loaded with
``from_pretrained``) labels the corpus in process into a fresh folder; when at
least ``--kill-at`` (half) of the shard files exist it is killed with SIGKILL.
``label_texts`` then runs again here on the same folder and reports how many
shards it found written (skipped) and how many it labeled; their sum must be the
shard count and the labels must equal (b)'s.

The machine is shared: before each timed section the script waits up to
``--wait`` s for the CPUs to be idle (``_common.wait_for_idle_cpu``) and records
the busy share seen; timings on a loaded machine are lower bounds.

Run (``--n 100000`` takes about 6 minutes per labeling at the ~270 texts/s of 2 idle cores; use a
smaller ``--n`` on a shared machine)::

    OMP_NUM_THREADS=2 HF_HUB_OFFLINE=1 python benchmarks/label_scale.py --n 6000 --shard-size 500
"""

from __future__ import annotations

import argparse
import csv
import os
import signal
import subprocess
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

NAME = "label_scale"
ATOL = 1e-5


def read_texts(path: Path) -> list[str]:
    with open(path, newline="", encoding="utf-8") as f:
        return [r["text"] for r in csv.DictReader(f)]


def build_corpus(rows: list[str], n: int) -> list[str]:
    """``n`` distinct texts: the rows, then the rows again with " (k)" appended."""
    out: list[str] = []
    k = 1
    while len(out) < n:
        out.extend(rows if k == 1 else [f"{t} ({k})" for t in rows])
        k += 1
    return out[:n]


def load_labels(folder: str) -> dict[bytes, np.ndarray]:
    from kdtext.distillation import _TeacherCache

    folder = Path(folder)
    return _TeacherCache(folder.parent.parent, folder.name).load()


def max_diff(a: dict, b: dict) -> float:
    if set(a) != set(b):
        return float("inf")
    return max(float(np.abs(a[k] - b[k]).max()) for k in a)


def run_child(args) -> None:
    """The process that is killed: label the corpus in process."""
    from kdtext import TextFiles, TransformerClassifier, label_texts

    teacher = TransformerClassifier.from_pretrained(args.child[0], device="cpu")
    label_texts(teacher, TextFiles(args.child[1]), out=args.child[2], shard_size=int(args.child[3]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    _common.add_common_args(parser, NAME)
    parser.add_argument("--n", type=int, default=100_000, help="texts to label (default: %(default)s)")
    parser.add_argument("--shard-size", type=int, default=2000, help="texts per shard (default: %(default)s)")
    parser.add_argument("--teacher-train", type=int, default=500, help="SST-2 rows the teacher is fitted on")
    parser.add_argument("--kill-at", type=float, default=0.5, help="share of shards written when the child is killed")
    parser.add_argument("--wait", type=float, default=30.0, help="max seconds to wait for idle CPUs per section")
    parser.add_argument("--max-busy", type=float, default=0.15, help="CPU share counted as idle")
    parser.add_argument("--child", nargs=4, metavar=("TEACHER", "CORPUS", "OUT", "SHARD_SIZE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        run_child(args)
        return 0

    import torch
    from distributed import Client, LocalCluster

    from kdtext import TextFiles, TransformerClassifier, label_texts
    from kdtext.distillation import teacher_fingerprint

    sst2 = _common.data_dir(args.data, "sst2")
    rows = read_texts(sst2 / "train.csv")
    train, rest = rows[: args.teacher_train], rows[args.teacher_train :]
    with open(sst2 / "train.csv", newline="", encoding="utf-8") as f:
        labels = [int(r["label"]) for r in csv.DictReader(f)][: args.teacher_train]
    corpus = build_corpus(rest, args.n)
    n_shards = -(-len(corpus) // args.shard_size)
    tmp = Path(tempfile.mkdtemp(prefix="kdtext-label-scale-"))
    import pandas as pd

    pd.DataFrame({"text": corpus}).to_parquet(tmp / "corpus.parquet")
    files = TextFiles(tmp / "corpus.parquet")
    print(f"{len(corpus)} texts, {n_shards} shards of {args.shard_size}; work folder {tmp}", flush=True)

    t0 = time.perf_counter()
    teacher = TransformerClassifier(None, epochs=1, validation_fraction=None, random_state=0).fit(train, labels)
    fit_s = time.perf_counter() - t0
    teacher.save_pretrained(tmp / "teacher")
    fingerprint = teacher_fingerprint(teacher)
    default_threads = torch.get_num_threads()

    rows_out, busy, folders = [], {}, {}

    def timed(name, workers, threads, fn):
        busy[name] = _common.wait_for_idle_cpu(args.max_busy, args.wait)
        result = fn(tmp / name)
        folders[name] = result.folder
        rows_out.append({"mode": name, "workers x threads": f"{workers} x {threads}", "seconds": result.seconds,
                         "texts/s": result.n_texts / result.seconds, "shards": result.n_labeled_shards})
        print(f"{name}: {result.n_texts / result.seconds:.1f} texts/s", flush=True)

    torch.set_num_threads(1)
    timed("1 process", 1, 1, lambda out: label_texts(teacher, files, out=out, shard_size=args.shard_size))
    torch.set_num_threads(default_threads)
    timed("embedded default", 1, default_threads,
          lambda out: label_texts(teacher, files, out=out, shard_size=args.shard_size))
    t0 = time.perf_counter()
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                      silence_logs=40) as cluster, Client(cluster) as client:
        cluster_start_s = time.perf_counter() - t0
        timed("dask 2 x 1", 2, 1,
              lambda out: label_texts(teacher, files, out=out, shard_size=args.shard_size, client=client))
        # again on the same workers (torch imported there): the teacher is sent anew, the imports are done
        timed("dask 2 x 1, warm", 2, 1,
              lambda out: label_texts(teacher, files, out=out, shard_size=args.shard_size, client=client))

    labels_by_mode = {name: load_labels(folder) for name, folder in folders.items()}
    reference = labels_by_mode["embedded default"]
    base = rows_out[0]["texts/s"]
    for row in rows_out:
        row["speedup vs 1 process"] = row["texts/s"] / base
        row["max |logit diff| vs default"] = max_diff(labels_by_mode[row["mode"]], reference)
    table = _common.print_table(rows_out, floatfmt="{:.3g}")

    # kill at ~50%, then resume
    out = tmp / "killed"
    folder = out / "kdtext_teacher_cache" / fingerprint
    busy["kill_resume"] = _common.wait_for_idle_cpu(args.max_busy, args.wait)
    child = subprocess.Popen([sys.executable, __file__, "--child", str(tmp / "teacher"), str(tmp / "corpus.parquet"),
                              str(out), str(args.shard_size)])
    target = max(1, int(round(args.kill_at * n_shards)))
    written = 0
    while child.poll() is None:
        written = len(list(folder.glob("*.npz"))) if folder.is_dir() else 0
        if written >= target:
            child.send_signal(signal.SIGKILL)
            break
        time.sleep(0.05)
    child.wait()
    killed = child.returncode == -signal.SIGKILL
    at_kill = len(list(folder.glob("*.npz"))) if folder.is_dir() else 0
    resumed = label_texts(teacher, files, out=out, shard_size=args.shard_size)
    resume_diff = max_diff(load_labels(resumed.folder), reference)
    kill = {
        "killed_by_sigkill": killed,
        "child_returncode": child.returncode,
        "shards_written_at_kill": at_kill,
        "resumed_skipped_shards": resumed.n_skipped_shards,
        "resumed_labeled_shards": resumed.n_labeled_shards,
        "n_shards": resumed.n_shards,
        "same_folder_as_parent_teacher": resumed.folder == str(folder),
        "max_abs_logit_diff_vs_default": resume_diff,
        "resume_seconds": resumed.seconds,
    }
    print(f"killed at {at_kill}/{n_shards} shards (SIGKILL: {killed}); resumed: {resumed.n_skipped_shards} skipped, "
          f"{resumed.n_labeled_shards} labeled; max logit diff vs default {resume_diff:.2g}", flush=True)

    worst = max(r["max |logit diff| vs default"] for r in rows_out)
    ok = worst <= ATOL and resume_diff <= ATOL and resumed.n_skipped_shards + resumed.n_labeled_shards == n_shards
    ok = ok and resumed.n_skipped_shards == at_kill and killed
    _common.write_json(args.out, {
        "n_texts": len(corpus),
        "shard_size": args.shard_size,
        "n_shards": n_shards,
        "teacher": "TransformerClassifier(None, epochs=1, validation_fraction=None, random_state=0) on "
                   f"{args.teacher_train} SST-2 train rows",
        "teacher_fit_seconds": fit_s,
        "torch_default_threads": default_threads,
        "dask_cluster_start_seconds": cluster_start_s,
        "rows": rows_out,
        "table": table,
        "max_abs_logit_diff": worst,
        "atol": ATOL,
        "kill_resume": kill,
        "cpu_busy_before_sections": busy,
        "passed": bool(ok),
    })
    import shutil

    shutil.rmtree(tmp, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
