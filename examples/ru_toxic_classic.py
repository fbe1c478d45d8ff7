"""Classify Russian toxic comments with a classic pipeline: clean, lemmatize, drop stop words, TF-IDF, forest.

    python examples/ru_toxic_classic.py                    # ../shared/data/ru_toxic train/test
    python examples/ru_toxic_classic.py --csv my_data.csv  # any CSV with text,label columns (80/20 split)
"""

import argparse
from pathlib import Path

import pandas as pd
from sklearn.ensemble import RandomForestClassifier
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.metrics import classification_report
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline

from kdtext.preprocessing import Lemmatizer, StopWordRemover, TextCleaner

parser = argparse.ArgumentParser()
parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[1] / ".." / "shared" / "data")
parser.add_argument("--csv", type=Path, help="one CSV with text,label columns, split 80/20 here")
args = parser.parse_args()

if args.csv:
    train, test = train_test_split(pd.read_csv(args.csv), test_size=0.2, random_state=42)
else:
    train = pd.read_csv(args.data / "ru_toxic" / "train.csv")
    test = pd.read_csv(args.data / "ru_toxic" / "test.csv")

model = make_pipeline(
    TextCleaner(),  # lower case, letters only, ё -> е
    Lemmatizer(),  # mystem if installed, else pymorphy3: "кошки бегали" -> "кошка бегать"
    StopWordRemover("russian"),
    TfidfVectorizer(min_df=2),
    RandomForestClassifier(n_estimators=300, max_features="log2", class_weight="balanced", n_jobs=-1, random_state=42),
)
model.fit(train["text"], train["label"])
print(classification_report(test["label"], model.predict(test["text"]), digits=3))
print(model.predict(["Спасибо за статью, очень полезно!", "Заткнись, идиот"]))
