"""Data-parallel fits across processes (kdtext/_parallel.py): torchrun with 2 CPU processes against one process.

Each fit runs in a fresh subprocess pinned to one torch thread, so the one-process reference and the two ranks
differ only in how the work is shared.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("accelerate")
torch = pytest.importorskip("torch")

TESTS = str(Path(__file__).parent)

_SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    sys.path.insert(0, {tests!r})
    import numpy as np
    import torch
    torch.set_num_threads(1)
    from conftest import make_toy_texts
    import kdtext

    X, y = make_toy_texts({n}, seed=0)
    rank = int(os.environ.get("RANK", "0"))
    {setup}
    clf = {make}
    out = os.path.join({out!r}, f"{{os.environ.get('WORLD_SIZE', '1')}}-{{rank}}")
    torch.save((clf.student_ if hasattr(clf, "student_") else clf).model_.state_dict(), out + ".pt")
    with open(out + ".json", "w") as fh:
        json.dump({{"history": clf.history_, "proba": clf.predict_proba(X).tolist(),
                   "best_epoch": int(getattr(clf, "student_", clf).best_epoch_)}}, fh)
    """
)


def _run(tmp_path, cls, params, *, processes, n=80, setup="", make=None, expect_ok=True):
    script = tmp_path / f"fit_{cls}.py"
    make = make or f"getattr(kdtext, {cls!r})(**{params!r}).fit(X, y)"
    script.write_text(_SCRIPT.format(tests=TESTS, n=n, make=make, out=str(tmp_path), setup=setup))
    cmd = [sys.executable, str(script)]
    if processes > 1:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
               str(script)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600,
                          env={**_clean_env(), "OMP_NUM_THREADS": "1"}, cwd=tmp_path)
    if expect_ok:
        assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


def _clean_env():
    # a WORLD_SIZE of this process (or Dask's thread limits) must not leak into the one-process reference
    return {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR",
                                                            "MASTER_PORT")}


def _load(tmp_path, world, rank):
    base = tmp_path / f"{world}-{rank}"
    return torch.load(str(base) + ".pt"), json.loads(Path(str(base) + ".json").read_text())


def _max_diff(a, b):
    assert a.keys() == b.keys()
    return max(float((a[k].double() - b[k].double()).abs().max()) for k in a)


# batch_size 7 over 64 training texts: odd batches (4 + 3 texts per process) and a last batch of 1 (one process
# holds no text and contributes a zero loss)
BILSTM = dict(vocab_size=300, embedding_dim=16, hidden_dim=16, dropout=0.0, epochs=4, batch_size=7,
              learning_rate=1e-2, validation_fraction=0.2, n_iter_no_change=None, random_state=0, device="cpu",
              verbose=1)  # progress bars on: the main process draws them


def test_two_processes_train_the_one_process_model(tmp_path):
    _run(tmp_path, "BiLSTMClassifier", BILSTM, processes=1)
    _run(tmp_path, "BiLSTMClassifier", BILSTM, processes=2)
    w1, h1 = _load(tmp_path, 1, 0)
    w2a, h2a = _load(tmp_path, 2, 0)
    w2b, h2b = _load(tmp_path, 2, 1)
    # every process ends with the same model, bit for bit
    assert all(torch.equal(w2a[k], w2b[k]) for k in w2a)
    assert h2a["proba"] == h2b["proba"]
    assert [{k: v for k, v in r.items() if k != "time"} for r in h2a["history"]] == \
        [{k: v for k, v in r.items() if k != "time"} for r in h2b["history"]]
    # ... which is the one-process model up to summation order
    assert _max_diff(w1, w2a) < 1e-4
    assert np.allclose(h1["proba"], h2a["proba"], atol=1e-4)
    assert h1["best_epoch"] == h2a["best_epoch"]
    # validation: each of the 16 texts scored once across the processes, so the scores are the one-process scores
    for r1, r2 in zip(h1["history"], h2a["history"], strict=True):
        assert r1["valid_score"] == r2["valid_score"]
        assert r1["valid_loss"] == pytest.approx(r2["valid_loss"], rel=1e-4)
        assert r1["train_loss"] == pytest.approx(r2["train_loss"], rel=1e-4)


@pytest.fixture(scope="module")
def bert_without_dropout(tmp_path_factory, tiny_bert_path):
    """The tiny test BERT without dropout, so that the processes draw no masks of their own."""
    from transformers import AutoConfig, AutoTokenizer, BertModel

    folder = tmp_path_factory.mktemp("bert-no-dropout")
    config = AutoConfig.from_pretrained(tiny_bert_path)
    config.hidden_dropout_prob = config.attention_probs_dropout_prob = 0.0
    BertModel.from_pretrained(tiny_bert_path, config=config).save_pretrained(folder)
    AutoTokenizer.from_pretrained(tiny_bert_path).save_pretrained(folder)
    return folder


def test_two_processes_train_a_mean_pooled_transformer(tmp_path, bert_without_dropout):
    # mean pooling leaves the pooler without a gradient, which DDP must not wait for
    folder = bert_without_dropout
    params = dict(model=str(folder), pooling="mean", epochs=2, batch_size=6, learning_rate=1e-3,
                  validation_fraction=0.25, n_iter_no_change=None, random_state=0, device="cpu")
    _run(tmp_path, "TransformerClassifier", params, processes=1, n=40)
    _run(tmp_path, "TransformerClassifier", params, processes=2, n=40)
    w1, h1 = _load(tmp_path, 1, 0)
    w2a, h2a = _load(tmp_path, 2, 0)
    w2b, _ = _load(tmp_path, 2, 1)
    assert all(torch.equal(w2a[k], w2b[k]) for k in w2a)
    assert _max_diff(w1, w2a) < 1e-4
    assert np.allclose(h1["proba"], h2a["proba"], atol=1e-4)
    assert [r["valid_score"] for r in h1["history"]] == [r["valid_score"] for r in h2a["history"]]


def test_two_processes_distil_with_hidden_state_losses(tmp_path, bert_without_dropout):
    # A narrower student: the learned projection (16 -> 32) of hidden_loss trains with it. DDP must average its
    # gradients too; if it did not, the student's averaged gradients would keep the processes equal to each other,
    # but not to one process (a projection trained on half batches).
    from kdtext import shrink_transformer

    teacher, narrow = str(bert_without_dropout), tmp_path / "narrow"
    shrink_transformer(teacher, narrow, layers=1, hidden_size=16, num_attention_heads=2, intermediate_size=20)
    make = (f"kdtext.DistillationClassifier(kdtext.TransformerClassifier({teacher!r}, epochs=1, random_state=0, "
            f"device='cpu').fit(X, y), kdtext.TransformerClassifier({str(narrow)!r}, epochs=2, batch_size=6, "
            "learning_rate=1e-3, random_state=0, device='cpu', n_iter_no_change=None), hidden_loss='mse', "
            "random_state=0).fit(X + [x.split()[1] + ' ' + x.split()[0] for x in X])")
    # every text 4 tokens long ([CLS] word word [SEP]): the token-averaged hidden loss of a process's share of a
    # batch is then exactly its share of the batch's loss (with texts of unequal length it is close, not exact)
    setup = ("from conftest import POSITIVE, NEGATIVE, NEUTRAL; "
             "X = [f'{a} {b}' for g in (POSITIVE, NEGATIVE) for a in g[:5] for b in NEUTRAL[:4]]; "
             "y = np.repeat([1, 0], 20)")
    _run(tmp_path, "kd", {}, processes=1, make=make, setup=setup)
    _run(tmp_path, "kd", {}, processes=2, make=make, setup=setup)
    w1, h1 = _load(tmp_path, 1, 0)
    w2a, h2a = _load(tmp_path, 2, 0)
    w2b, h2b = _load(tmp_path, 2, 1)
    assert all(torch.equal(w2a[k], w2b[k]) for k in w2a) and h2a["proba"] == h2b["proba"]
    assert _max_diff(w1, w2a) < 1e-4
    assert np.allclose(h1["proba"], h2a["proba"], atol=1e-4)


def test_processes_with_different_data_are_refused(tmp_path):
    proc = _run(tmp_path, "BiLSTMClassifier", {**BILSTM, "epochs": 1}, processes=2,
                setup="X = X if rank == 0 else X[::-1]", expect_ok=False)
    assert proc.returncode != 0
    assert "other training data than process 0" in proc.stderr


def test_only_the_main_process_checkpoints_and_one_process_resumes_it(tmp_path):
    ckpt = tmp_path / "ckpt"
    params = {**BILSTM, "checkpoint_dir": str(ckpt)}
    _run(tmp_path, "BiLSTMClassifier", params, processes=2)
    assert sorted(p.name for p in ckpt.iterdir()) == ["kdtext_checkpoint.pt"]
    w2, h2 = _load(tmp_path, 2, 0)
    # the finished two-process fit is restored by one process without training: the saved weights are the
    # unwrapped model's (no DDP "module." prefixes) and the fingerprint does not depend on the process count
    from conftest import make_toy_texts

    from kdtext import BiLSTMClassifier

    X, y = make_toy_texts(80, seed=0)
    again = BiLSTMClassifier(**params).fit(X, y)
    assert all(torch.equal(again.model_.state_dict()[k], w2[k]) for k in w2)
    assert [r["valid_score"] for r in again.history_] == [r["valid_score"] for r in h2["history"]]


def test_without_accelerate_a_launched_fit_says_what_to_install(monkeypatch, toy_data):
    from kdtext import BiLSTMClassifier

    X, y = toy_data
    fitted = BiLSTMClassifier(vocab_size=200, embedding_dim=8, hidden_dim=8, epochs=1, random_state=0,
                              device="cpu").fit(X, y)
    before = fitted.predict_proba(X)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setitem(sys.modules, "accelerate", None)
    with pytest.raises(ImportError, match=r"kdtext\[accelerate\]"):
        fitted.fit(X, y)
    assert np.array_equal(fitted.predict_proba(X), before)  # the failed refit changed nothing
