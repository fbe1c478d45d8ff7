"""Tests for kdtext.preprocessing: TextCleaner, Lemmatizer, StopWordRemover."""

from __future__ import annotations

import logging
import os
import pickle
import stat
import sys
import textwrap

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.utils._param_validation import InvalidParameterError

from kdtext.preprocessing import Lemmatizer, StopWordRemover, TextCleaner

pytest.importorskip("pymorphy3")


def _no_mystem(monkeypatch):
    """Make sure no mystem binary is found, whatever this machine has."""
    monkeypatch.setattr(Lemmatizer, "_find_mystem", lambda self: None if self.mystem_path is None else self.mystem_path)


def _real_mystem() -> str | None:
    return Lemmatizer()._find_mystem()


# --------------------------------------------------------------------- TextCleaner
def test_cleaner_russian_latin_digits_punctuation_yo():
    text = "  Ёлки-палки!!! Всё ОК, see 42 you…\tзавтра?\n"
    assert TextCleaner().transform([text]) == ["елки палки все ок see you завтра"]
    assert TextCleaner(keep_digits=True).transform([text]) == ["елки палки все ок see 42 you завтра"]
    assert TextCleaner(replace_yo=False).transform(["Ёж ёж"]) == ["ёж ёж"]
    assert TextCleaner(lowercase=False).transform(["Ёж, Hi!"]) == ["Еж Hi"]
    assert TextCleaner(alphabets=("cyrillic",)).transform(["привет hello"]) == ["привет"]
    assert TextCleaner(alphabets="latin").transform(["привет hello"]) == ["hello"]


def test_cleaner_empty_results():
    assert TextCleaner().transform(["", "!!! 123 ...", "  "]) == ["", "", ""]
    assert TextCleaner().transform([]) == []


def test_cleaner_custom_pattern():
    # one character at a time: words stay whole, gaps become one space
    assert TextCleaner(pattern=r"[a-z]").transform(["abc, DEF;;ghi"]) == ["abc def ghi"]
    assert TextCleaner(pattern=r"[a-z0-9@.]+").transform(["Mail: A.B@x.org!"]) == ["mail a.b@x.org"]
    with pytest.raises(ValueError, match="not a valid regular expression"):
        TextCleaner(pattern="[a-").transform(["x"])


def test_cleaner_bad_alphabet():
    with pytest.raises(ValueError, match="alphabets must name"):
        TextCleaner(alphabets=("greek",)).fit(["x"])


# --------------------------------------------------------------------- Lemmatizer
def test_lemmatizer_pymorphy3():
    lem = Lemmatizer(backend="pymorphy3")
    assert lem.transform(["кошки бегали", "Кошки, БЕГАЛИ!", "", "hello world"]) == [
        "кошка бегать",
        "кошка бегать",
        "",
        "hello world",
    ]
    assert lem.fit(["x"]) is lem and lem.backend_ == "pymorphy3"


def test_lemmatizer_cache_avoids_repeated_parses(monkeypatch):
    lem = Lemmatizer(backend="pymorphy3")
    morph = lem._morph()
    calls = []
    real_parse = morph.parse
    monkeypatch.setattr(morph, "parse", lambda w: calls.append(w) or real_parse(w))
    out = lem.transform(["кошки бегали"] * 50 + ["кошки прыгали"])
    assert out[0] == "кошка бегать" and out[-1] == "кошка прыгать"
    assert sorted(calls) == ["бегали", "кошки", "прыгали"]  # each distinct word parsed once
    assert lem.cache_info() == {"hits": 99, "misses": 3, "size": 3, "maxsize": 100_000}


def test_lemmatizer_cache_is_bounded():
    lem = Lemmatizer(backend="pymorphy3", cache_size=2)
    lem.transform(["кошки бегали прыгали кошки"])
    info = lem.cache_info()
    assert info["size"] == 2 and info["misses"] == 4 and info["hits"] == 0
    no_cache = Lemmatizer(backend="pymorphy3", cache_size=0)
    assert no_cache.transform(["кошки кошки"]) == ["кошка кошка"]
    assert no_cache.cache_info()["size"] == 0


def test_lemmatizer_auto_falls_back_to_pymorphy3_and_logs(monkeypatch, caplog):
    _no_mystem(monkeypatch)
    lem = Lemmatizer()
    with caplog.at_level(logging.INFO, logger="kdtext.preprocessing"):
        assert lem.transform(["кошки бегали"]) == ["кошка бегать"]
    assert lem.backend_ == "pymorphy3"
    assert "uses pymorphy3" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="kdtext.preprocessing"):
        lem.transform(["кошки"])
    assert caplog.text == ""  # chosen once, not logged on every call


def test_lemmatizer_mystem_without_binary_is_a_clear_error(monkeypatch):
    _no_mystem(monkeypatch)
    with pytest.raises(RuntimeError, match="mystem_path=.*backend='pymorphy3'"):
        Lemmatizer(backend="mystem").fit(["кошки"])


def test_lemmatizer_mystem_path_that_does_not_exist(tmp_path):
    with pytest.raises(FileNotFoundError, match="not an executable file"):
        Lemmatizer(backend="mystem", mystem_path=str(tmp_path / "nope")).transform(["кошки"])


@pytest.fixture
def fake_mystem(tmp_path):
    """A stand-in for the mystem binary speaking its JSON line protocol; logs each request line."""
    log = tmp_path / "requests.log"
    script = tmp_path / "mystem"
    script.write_text(
        textwrap.dedent(
            f"""\
            #!{sys.executable}
            import json, re, sys
            LEMMAS = {{"кошки": "кошка", "бегали": "бегать", "собаки": "собака"}}
            for line in sys.stdin:
                with open({str(log)!r}, "a", encoding="utf-8") as f:
                    f.write(line)
                words = re.findall(r"\\w+", line)
                out = [{{"analysis": [{{"lex": LEMMAS[w.lower()]}}], "text": w}} if w.lower() in LEMMAS
                       else {{"analysis": [], "text": w}} for w in words]
                sys.stdout.write(json.dumps(out, ensure_ascii=False) + "\\n")
                sys.stdout.flush()
            """
        ),
        encoding="utf-8",
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script, log


@pytest.mark.skipif(os.name != "posix", reason="the fake mystem is a POSIX script")
def test_lemmatizer_mystem_batches_requests(fake_mystem):
    script, log = fake_mystem
    lem = Lemmatizer(backend="mystem", mystem_path=str(script), batch_size=2)
    texts = ["Кошки бегали", "", "собаки\nбегали", "Hello", "кошки"]
    assert lem.transform(texts) == ["кошка бегать", "", "собака бегать", "hello", "кошка"]
    assert lem.backend_ == "mystem"
    assert len(log.read_text(encoding="utf-8").splitlines()) == 3  # 5 texts, batches of 2
    clone(lem).transform(["кошки"])  # a clone starts its own process
    pickle.loads(pickle.dumps(lem)).transform(["кошки"])


@pytest.mark.skipif(_real_mystem() is None, reason="the mystem binary is not installed (kdtext never downloads it)")
def test_lemmatizer_real_mystem():
    lem = Lemmatizer(backend="mystem")
    assert lem.transform(["Кошки бегали по крышам", "", "мама мыла раму"]) == [
        "кошка бегать по крыша",
        "",
        "мама мыть рама",
    ]


# --------------------------------------------------------------------- StopWordRemover
def test_stop_words_removed():
    assert StopWordRemover("russian").transform(["я думаю что это всё не так", "и"]) == ["думаю не", ""]
    assert StopWordRemover("english").transform(["The film is NOT good"]) == ["film NOT good"]
    custom = StopWordRemover(stop_words=["плохой"], extra_stop_words=["фильм"])
    assert custom.transform(["это плохой фильм"]) == ["это"]


def test_stop_word_lists_are_sane():
    for language in ("russian", "english"):
        words = StopWordRemover(language).get_stop_words()
        assert 150 <= len(words) <= 400
        assert all(w == w.strip().lower() and "ё" not in w for w in words)
    assert {"не", "нет"}.isdisjoint(StopWordRemover("russian").get_stop_words())
    assert {"not", "no"}.isdisjoint(StopWordRemover("english").get_stop_words())
    assert "её" not in StopWordRemover().transform(["её"])[0]


def test_stop_words_bad_params():
    with pytest.raises(InvalidParameterError, match="language"):
        StopWordRemover("german").transform(["x"])
    with pytest.raises(InvalidParameterError, match="extra_stop_words"):
        StopWordRemover(extra_stop_words="фильм").transform(["x"])


# --------------------------------------------------------------------- sklearn contract
ESTIMATORS = [
    TextCleaner(keep_digits=True),
    Lemmatizer(backend="pymorphy3"),
    StopWordRemover("english", extra_stop_words=["film"]),
]


@pytest.mark.parametrize("est", ESTIMATORS, ids=lambda e: type(e).__name__)
def test_clone_get_params_pickle(est):
    texts = ["Кошки бегали по крышам!", "the film was not good 42"]
    expected = est.transform(texts)
    assert isinstance(expected, list) and all(isinstance(t, str) for t in expected)
    cloned = clone(est)
    assert cloned.get_params() == est.get_params()
    assert cloned.transform(texts) == expected
    restored = pickle.loads(pickle.dumps(est))
    assert restored.get_params() == est.get_params()
    assert restored.transform(texts) == expected
    assert est.fit(texts) is est
    assert est.fit_transform(texts) == expected
    tags = est.__sklearn_tags__()
    assert tags.input_tags.string and not tags.input_tags.two_d_array and not tags.requires_fit


def test_lemmatizer_pickle_drops_analyzer():
    lem = Lemmatizer(backend="pymorphy3")
    lem.transform(["кошки"])
    state = lem.__getstate__()
    assert "_morph_analyzer" not in state and "_lemma_cache" not in state
    assert lem.cache_info()["size"] == 1  # the live instance keeps its cache


@pytest.mark.parametrize("est", ESTIMATORS, ids=lambda e: type(e).__name__)
def test_sklearn_checks(est):
    from sklearn.utils.estimator_checks import (
        check_estimator_repr,
        check_get_params_invariance,
        check_no_attributes_set_in_init,
        check_set_params,
    )

    name = type(est).__name__
    check_no_attributes_set_in_init(name, clone(est))
    check_estimator_repr(name, clone(est))
    check_get_params_invariance(name, clone(est))
    check_set_params(name, clone(est))


@pytest.mark.parametrize("est", ESTIMATORS, ids=lambda e: type(e).__name__)
def test_bad_input_errors_come_from_check_texts(est):
    with pytest.raises(TypeError, match="single str"):
        est.transform("кошки бегали")
    with pytest.raises(ValueError, match=r"missing value\(s\)"):
        est.fit(["кошки", None])
    with pytest.raises(TypeError, match="must hold only str"):
        est.transform(["кошки", 3])
    with pytest.raises(ValueError, match="empty"):
        est.fit([])


_ONE_SHOT_TEXTS = ["Кошки бегали по крышам!", "the film was not good 42", "", "Ёжик, ты где?!"]


@pytest.mark.parametrize(
    "make_iterable",
    [
        lambda texts: (t for t in texts),
        lambda texts: iter(list(texts)),
        lambda texts: map(str, texts),
    ],
    ids=["generator", "iter", "map"],
)
@pytest.mark.parametrize("est", ESTIMATORS, ids=lambda e: type(e).__name__)
def test_fit_transform_and_transform_read_a_one_shot_iterable_once(est, make_iterable):
    # the inherited fit_transform let fit consume a generator, so transform returned []
    expected = clone(est).transform(list(_ONE_SHOT_TEXTS))
    assert len(expected) == len(_ONE_SHOT_TEXTS)
    assert clone(est).fit_transform(make_iterable(_ONE_SHOT_TEXTS)) == expected
    assert clone(est).transform(make_iterable(_ONE_SHOT_TEXTS)) == expected
    assert clone(est).fit(list(_ONE_SHOT_TEXTS)).transform(make_iterable(_ONE_SHOT_TEXTS)) == expected


@pytest.mark.parametrize("est", ESTIMATORS, ids=lambda e: type(e).__name__)
def test_fit_transform_keeps_fit_input_checks(est):
    with pytest.raises(ValueError, match="empty"):
        clone(est).fit_transform(t for t in [])
    with pytest.raises(TypeError, match="single str"):
        clone(est).fit_transform("кошки бегали")
    with pytest.raises(ValueError, match=r"missing value\(s\)"):
        clone(est).fit_transform(iter(["кошки", None]))


def test_pipeline_fit_transform_over_a_generator():
    pipe = make_pipeline(TextCleaner(), StopWordRemover("english"))
    texts = ["The film, was NOT good!", "a bad one"]
    assert pipe.fit_transform(t for t in texts) == pipe.fit_transform(texts) == ["film not good", "bad"]


def test_accepts_numpy_and_pandas():
    pd = pytest.importorskip("pandas")
    assert TextCleaner().transform(np.array(["A!", "b"])) == ["a", "b"]
    assert TextCleaner().transform(pd.Series(["A!", "b"])) == ["a", "b"]


def test_pipeline_with_tfidf_and_logistic_regression():
    texts = [
        "Ты ужасный тупой идиот!",
        "Какой же ты тупой, идиоты кругом",
        "Идиот, ужасно тупые комментарии",
        "Спасибо за отличную статью",
        "Отличный пост, спасибо автору!",
        "Статья отличная, большое спасибо",
    ]
    y = [1, 1, 1, 0, 0, 0]
    pipe = make_pipeline(
        TextCleaner(),
        Lemmatizer(backend="pymorphy3"),
        StopWordRemover("russian"),
        TfidfVectorizer(),
        LogisticRegression(C=10),
    )
    pipe.fit(texts, y)
    assert pipe.predict(["тупой идиот", "спасибо за статью"]).tolist() == [1, 0]
    assert pipe.score(texts, y) == 1.0
    restored = pickle.loads(pickle.dumps(pipe))
    assert restored.predict(["идиоты"]).tolist() == [1]
    assert clone(pipe).fit(texts, y).predict(["отличная статья"]).tolist() == [0]
