"""Which MatMuls of a fine-tuned teacher make its int8 graph disagree with fp32 (issue 11).

The teacher: a fitted ``TransformerClassifier`` folder (``--teacher``; default the distill_sst2 teacher that
``benchmarks/distill_sst2.py`` saves in ``benchmarks/.cache/distill_sst2-teacher``: MiniLM fine-tuned on 8,000 SST-2
texts). It is exported to ONNX fp32 once (``export_onnx``), then quantized with onnxruntime's ``quantize_dynamic``
the way ``export_onnx(quantize="int8")`` does (int8 weights, one scale per output channel, 7-bit weights) with
some MatMuls left out of the quantization (``nodes_to_exclude``), through the export's own
``kdtext.onnx._quantize_int8``. Texts: ``sst2/dev.csv`` + ``sst2/test.csv``
(2,693 sentences).

- ``--sensitivity``: each weight MatMul/Gemm quantized ALONE (the rest fp32) on the first 1,000 texts: the mean
  absolute logit difference to fp32 and the argmax agreement it causes, most harmful first.
- then, for each variant of ``VARIANTS`` (names of the layers' feed-forward MatMuls, found in the graph): argmax
  agreement with fp32, accuracy, max logit difference, and texts/s against onnxruntime fp32 and against torch fp32
  (the teacher's own ``predict_logits``, row (c) of ``teacher_throughput.py``, the issue's reference), best of
  ``--repeats``, all forms interleaved so they see the same machine load. ``--threads N`` gives torch and
  onnxruntime N threads each (default: their defaults).
- and ``MarginFallbackClassifier`` rows (``--rescore-margins``): the fully quantized graph, with the fp32 teacher
  re-labeling the texts whose int8 top-two probability margin is below each margin (``rescored``: their share),
  timed end to end.

Command::

    python benchmarks/int8_sensitivity.py --sensitivity
    OMP_NUM_THREADS=1 python benchmarks/int8_sensitivity.py --threads 1 --teacher FOLDER --out FILE

Writes ``benchmarks/results/int8_sensitivity.json``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402

import _common  # noqa: E402

NAME = "int8_sensitivity"
#: variant -> layers whose two feed-forward MatMuls stay fp32 ("all": every layer)
VARIANTS = {"int8 (export_onnx)": [], "fp32 FFN layer 0": [0], "fp32 FFN layers 0-1": [0, 1],
            "fp32 FFN layers 0-2": [0, 1, 2], "fp32 FFN all layers": "all"}


def read(path: Path) -> tuple[list[str], list[int]]:
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return [r["text"] for r in rows], [int(r["label"]) for r in rows]


def weight_matmuls(model_path: Path) -> list[str]:
    """Names of the MatMul/Gemm nodes with a weight (initializer) input, in graph order."""
    import onnx

    model = onnx.load(str(model_path), load_external_data=False)
    inits = {i.name for i in model.graph.initializer}
    return [n.name for n in model.graph.node if n.op_type in ("MatMul", "Gemm") and n.input[1] in inits]


def quantized(fp32: Path, work: Path, tag: str, *, include=None, exclude=(), **params):
    """An OnnxClassifier over a copy of the fp32 export quantized by export_onnx's own rule, some nodes left out."""
    from kdtext import OnnxClassifier
    from kdtext.onnx import ONNX_CONFIG_NAME, _quantize_int8

    folder = work / tag
    shutil.copytree(fp32, folder)
    config = json.loads((folder / ONNX_CONFIG_NAME).read_text(encoding="utf-8"))
    _quantize_int8(folder, config, nodes_to_quantize=include, nodes_to_exclude=exclude)
    (folder / ONNX_CONFIG_NAME).write_text(json.dumps(config), encoding="utf-8")
    return OnnxClassifier.from_pretrained(folder, **params)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    _common.add_common_args(parser, NAME)
    parser.add_argument("--teacher", type=Path, default=_common.BENCH_DIR / ".cache" / "distill_sst2-teacher")
    parser.add_argument("--sensitivity", action="store_true", help="also quantize each MatMul alone")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None, help="torch and onnxruntime threads (default: theirs)")
    parser.add_argument("--set", default="sst2", help="data set: sst2 (dev + test) or another set's test.csv")
    parser.add_argument("--rescore-margins", default="0.2,0.3",
                        help="MarginFallbackClassifier rows: the int8 graph, the fp32 teacher below these margins")
    args = parser.parse_args(argv)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    ort_params = {"n_threads": args.threads} if args.threads else {}

    from kdtext import OnnxClassifier, TransformerClassifier

    root = _common.data_dir(args.data, args.set)
    if args.set == "sst2":
        Xd, yd = read(root / "dev.csv")
        Xt, yt = read(root / "test.csv")
        X, y = Xd + Xt, np.array(yd + yt)
    else:
        X, y = read(root / "test.csv")
        y = np.array(y)
    teacher = TransformerClassifier.from_pretrained(args.teacher, device="cpu")
    result: dict = {"benchmark": NAME, "set": args.set, "teacher": str(args.teacher.name), "n_texts": len(X)}
    with tempfile.TemporaryDirectory(prefix="kdtext-int8-") as tmp:
        work = Path(tmp)
        fp32 = teacher.export_onnx(work / "fp32")
        ref = OnnxClassifier.from_pretrained(fp32, **ort_params)
        L = ref.predict_logits(X)
        classes = np.asarray(teacher.classes_)
        result["fp32_accuracy"] = float(np.mean(classes[L.argmax(1)] == y))
        nodes = weight_matmuls(fp32 / "model.onnx")
        # per layer: Q, K, V, attention output, FFN in, FFN out; then the head
        per_layer = 6
        n_layers = (len(nodes) - 1) // per_layer
        ffn = {i: nodes[i * per_layer + 4 : i * per_layer + 6] for i in range(n_layers)}
        result["nodes"] = nodes
        if args.sensitivity:
            sub = X[:1000]
            Ls = L[:1000]
            sens = []
            for k, node in enumerate(nodes):
                Q = quantized(fp32, work, f"s{k}", include=[node]).predict_logits(sub)
                sens.append({"node": node, "layer": k // per_layer if k < n_layers * per_layer else "head",
                             "role": (["Q", "K", "V", "attn out", "FFN in", "FFN out"][k % per_layer]
                                      if k < n_layers * per_layer else "classifier"),
                             "mean_abs_logit_diff": float(np.abs(Q - Ls).mean()),
                             "agreement": float(np.mean(Q.argmax(1) == Ls.argmax(1)))})
                print(sens[-1], flush=True)
                shutil.rmtree(work / f"s{k}")
            sens.sort(key=lambda r: -r["mean_abs_logit_diff"])
            result["sensitivity"] = sens
        models = {}
        for name, layers in VARIANTS.items():
            keep = [n for i in (range(n_layers) if layers == "all" else layers) for n in ffn[i]]
            models[name] = (quantized(fp32, work, f"v{len(models)}", exclude=keep, **ort_params), keep)
        from kdtext.quantization import MarginFallbackClassifier, _top_two_margin

        int8 = models["int8 (export_onnx)"][0]
        for m in (float(v) for v in args.rescore_margins.split(",") if v):
            models[f"int8, fp32 below margin {m:g}"] = (MarginFallbackClassifier(int8, teacher, margin=m).fit(), [])
        times = {name: [] for name in ["torch fp32", "fp32", *models]}
        rows = {}
        for rep in range(args.repeats):
            t0 = time.perf_counter()
            teacher.predict_logits(X)
            times["torch fp32"].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            ref.predict_logits(X)
            times["fp32"].append(time.perf_counter() - t0)
            for name, (model, keep) in models.items():
                t0 = time.perf_counter()
                Q = model.predict_logits(X)
                times[name].append(time.perf_counter() - t0)
                rescored = (float(np.mean(_top_two_margin(rows["int8 (export_onnx)"]["_logits"]) < model.margin))
                            if isinstance(model, MarginFallbackClassifier) else 0.0)
                rows[name] = {"variant": name, "fp32_nodes": len(keep), "rescored": rescored, "_logits": Q,
                              "agreement": float(np.mean(Q.argmax(1) == L.argmax(1))),
                              "accuracy": float(np.mean(classes[Q.argmax(1)] == y)), "max_logit_diff": float(np.abs(Q - L).max())}
        for name, row in rows.items():
            del row["_logits"]
            row["speed_vs_fp32"] = min(times["fp32"]) / min(times[name])
            row["speed_vs_torch_fp32"] = min(times["torch fp32"]) / min(times[name])
        result["fp32_seconds"] = times["fp32"]
        result["torch_fp32_seconds"] = times["torch fp32"]
        result["threads"] = args.threads
        result["variants"] = list(rows.values())
    _common.print_table(result["variants"], floatfmt="{:.4f}")
    print(f"onnxruntime fp32: accuracy {result['fp32_accuracy']:.4f}, best {min(times['fp32']):.1f} s; "
          f"torch fp32 best {min(times['torch fp32']):.1f} s")
    _common.write_json(args.out, {**result, "machine": _common.machine_info()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
