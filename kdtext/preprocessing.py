"""Stateless text preprocessing as scikit-learn transformers.

:class:`TextCleaner`, :class:`Lemmatizer` and :class:`StopWordRemover` take a
list of texts and return a list of texts, so they chain in a
:class:`~sklearn.pipeline.Pipeline` in front of a vectorizer::

    make_pipeline(TextCleaner(), Lemmatizer(), StopWordRemover("russian"),
                  TfidfVectorizer(), LogisticRegression())

None of them learns anything: ``fit`` only checks parameters and input, and
``transform`` works without it. The optional Russian back-ends (``pymorphy3``,
``pymystem3``) are imported only when a :class:`Lemmatizer` first needs them
(``pip install kdtext[ru]``).
"""

from __future__ import annotations

import functools
import logging
import os
import re
import shutil
from collections import OrderedDict
from collections.abc import Iterable
from importlib import resources
from numbers import Integral
from typing import Any

from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils._param_validation import Interval, StrOptions

from kdtext.base import TextInputMixin, check_texts

logger = logging.getLogger(__name__)

__all__ = ["TextCleaner", "Lemmatizer", "StopWordRemover"]

# Letters kept by ``TextCleaner(alphabets=...)``, as bodies of a regex character class.
_ALPHABETS = {
    # The whole Cyrillic block: Russian plus Ukrainian, Belarusian, Serbian... letters.
    "cyrillic": "\u0400-\u04ff",
    # ASCII letters and the Latin-1 / Latin Extended-A/B letters (without × and ÷).
    "latin": "A-Za-z\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u024f",
}
_SPACES = re.compile(r"\s+")


class _TextTransformer(TextInputMixin, TransformerMixin, BaseEstimator):
    """Shared plumbing: stateless, 1-D string input, list-of-str output."""

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.requires_fit = False
        return tags

    def fit(self, X: Iterable[str], y: Any = None) -> "_TextTransformer":
        """Check the parameters and the texts; nothing is learned.

        Parameters
        ----------
        X : list-like of str
            The texts.
        y : None
            Ignored.

        Returns
        -------
        self : object
            The transformer itself.
        """
        self._validate_params()
        check_texts(X)
        self._transform([])  # the checks that need the parameters combined (regex, back-end...)
        return self

    def transform(self, X: Iterable[str]) -> list[str]:
        """Transform the texts.

        Parameters
        ----------
        X : list-like or iterable of str
            The texts; a generator is read once.

        Returns
        -------
        texts : list of str
            One transformed text per input text.
        """
        self._validate_params()
        texts = check_texts(X, allow_empty=True)
        return self._transform(texts)

    def fit_transform(self, X: Iterable[str], y: Any = None, **fit_params: Any) -> list[str]:
        """Fit, then transform the same texts.

        The texts are read once, so a one-shot iterable (a generator,
        ``iter(list)``, ``map(...)``) gives the same result as a list; the
        inherited version would let ``fit`` consume it and ``transform`` see
        nothing.

        Parameters
        ----------
        X : list-like or iterable of str
            The texts. As in ``fit``, at least one is required.
        y : None
            Ignored.
        **fit_params : dict
            Passed to ``fit`` (which takes none).

        Returns
        -------
        texts : list of str
            One transformed text per input text.
        """
        texts = check_texts(X)
        return self.fit(texts, y, **fit_params)._transform(texts)

    def _transform(self, texts: list[str]) -> list[str]:  # pragma: no cover - abstract
        raise NotImplementedError


class TextCleaner(_TextTransformer):
    """Lower-case texts and keep only the letters of chosen alphabets.

    Every character that is not kept becomes a space; runs of spaces are then
    collapsed into one and the text is stripped, so a text made only of
    punctuation becomes ``""``.

    Parameters
    ----------
    lowercase : bool, default=True
        Whether to lower-case the text.
    alphabets : tuple of {"cyrillic", "latin"} or str, default=("cyrillic", "latin")
        The alphabets whose letters are kept. Ignored when ``pattern`` is given.
    pattern : str or None, default=None
        A regular expression matching the characters (or runs of characters) to
        KEEP, e.g. ``r"[а-я]+"``. Everything between two matches becomes one
        space. When given, ``alphabets`` and ``keep_digits`` are ignored.
        It is applied after lower-casing and ``ё`` replacement.
    replace_yo : bool, default=True
        Whether to replace ``ё`` with ``е`` and ``Ё`` with ``Е``, as most Russian
        text is written without ``ё``.
    keep_digits : bool, default=False
        Whether to keep the digits 0-9 too.

    See Also
    --------
    Lemmatizer : Replace words with their dictionary forms.
    StopWordRemover : Drop common function words.

    Examples
    --------
    >>> from kdtext.preprocessing import TextCleaner
    >>> TextCleaner().transform(["Ёжик, ты где?! Hello 2 you :)", "!!!"])
    ['ежик ты где hello you', '']
    >>> TextCleaner(alphabets=("cyrillic",), keep_digits=True).transform(["В 2024 году: OK"])
    ['в 2024 году']
    >>> TextCleaner(pattern=r"[a-z]+").transform(["abc-def ghi!"])
    ['abc def ghi']
    """

    _parameter_constraints: dict = {
        "lowercase": ["boolean"],
        "alphabets": [tuple, list, str],
        "pattern": [str, None],
        "replace_yo": ["boolean"],
        "keep_digits": ["boolean"],
    }

    def __init__(
        self,
        lowercase: bool = True,
        alphabets: tuple[str, ...] | list[str] | str = ("cyrillic", "latin"),
        pattern: str | None = None,
        replace_yo: bool = True,
        keep_digits: bool = False,
    ) -> None:
        self.lowercase = lowercase
        self.alphabets = alphabets
        self.pattern = pattern
        self.replace_yo = replace_yo
        self.keep_digits = keep_digits

    def _keep_regex(self) -> re.Pattern:
        if self.pattern is not None:
            try:
                return re.compile(self.pattern)
            except re.error as exc:
                raise ValueError(
                    f"pattern={self.pattern!r} is not a valid regular expression: {exc}."
                ) from exc
        names = (self.alphabets,) if isinstance(self.alphabets, str) else tuple(self.alphabets)
        unknown = [a for a in names if a not in _ALPHABETS]
        if unknown or not names:
            raise ValueError(
                f"alphabets must name one or more of {sorted(_ALPHABETS)}; got {self.alphabets!r}. "
                "Use pattern= for any other set of characters."
            )
        body = "".join(_ALPHABETS[a] for a in names) + ("0-9" if self.keep_digits else "")
        return re.compile(f"[{body}]+")

    def _transform(self, texts: list[str]) -> list[str]:
        keep = self._keep_regex()
        return [self._clean(keep, t) for t in texts]

    def _clean(self, keep: re.Pattern, text: str) -> str:
        if self.replace_yo:
            text = text.replace("ё", "е").replace("Ё", "Е")
        if self.lowercase:
            text = text.lower()
        # Matches are kept as they are and only the gaps between them become spaces,
        # so a pattern matching one character at a time (r"[a-z]") keeps words whole.
        pieces: list[str] = []
        last = 0
        for m in keep.finditer(text):
            if m.start() > last:
                pieces.append(" ")
            pieces.append(m.group())
            last = m.end()
        return _SPACES.sub(" ", "".join(pieces)).strip()


class Lemmatizer(_TextTransformer):
    """Replace every word with its dictionary form (lemma).

    Two back-ends are supported:

    - ``"mystem"``: Yandex Mystem through ``pymystem3``, with context
      disambiguation. Needs the ``mystem`` binary, which kdtext never downloads.
      Texts are sent in batches of ``batch_size``, joined by a separator word
      into one request, so a corpus costs a few calls rather than one per text.
    - ``"pymorphy3"``: pure Python, per word (no context), pip-installable.
      Words are taken with the regex ``\\w+(?:-\\w+)*``, so punctuation and
      other non-word characters are dropped; lemmas of repeated words come
      from a per-instance cache of ``cache_size`` entries.

    The output is the lemmas in lower case, joined by single spaces. Words
    that the back-end does not know (e.g. English ones) pass through
    lower-cased.

    Parameters
    ----------
    backend : {"auto", "mystem", "pymorphy3"}, default="auto"
        ``"auto"`` uses mystem when its binary is found, pymorphy3 otherwise,
        and logs (INFO) which one it chose.
    mystem_path : str or None, default=None
        Path to the ``mystem`` binary. When None, the ``MYSTEM_BIN`` environment
        variable, pymystem3's install location (``MYSTEM3_PATH``, then
        ``PATH``, then ``~/.local/bin/mystem``) and ``PATH`` are searched.
    batch_size : int, default=1000
        Texts per mystem request.
    cache_size : int, default=100_000
        Lemmas kept per instance by the pymorphy3 back-end (least recently used
        first out); 0 disables the cache.

    Attributes
    ----------
    backend_ : str
        The back-end in use, set on the first call to ``fit`` or ``transform``.

    Notes
    -----
    The pymorphy3 analyzer, the mystem process and the lemma cache are created
    on first use and are not pickled; an unpickled or cloned Lemmatizer
    rebuilds them when it is next used.

    Examples
    --------
    >>> from kdtext.preprocessing import Lemmatizer
    >>> Lemmatizer(backend="pymorphy3").transform(["Кошки бегали по крышам!", "cats"])
    ['кошка бегать по крыша', 'cats']
    """

    _SEPARATOR = "kdtextbreakzq"

    _parameter_constraints: dict = {
        "backend": [StrOptions({"auto", "mystem", "pymorphy3"})],
        "mystem_path": [str, os.PathLike, None],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "cache_size": [Interval(Integral, 0, None, closed="left")],
    }

    def __init__(
        self,
        backend: str = "auto",
        mystem_path: str | os.PathLike | None = None,
        batch_size: int = 1000,
        cache_size: int = 100_000,
    ) -> None:
        self.backend = backend
        self.mystem_path = mystem_path
        self.batch_size = batch_size
        self.cache_size = cache_size

    # -- back-end selection -------------------------------------------------
    def _find_mystem(self) -> str | None:
        """Where the mystem binary is, or None. Never triggers pymystem3's download."""
        if self.mystem_path is not None:
            path = os.fspath(self.mystem_path)
            if os.path.isfile(path) and os.access(path, os.X_OK):
                return path
            raise FileNotFoundError(
                f"mystem_path={path!r} is not an executable file. Give the path of the "
                "mystem binary, or use backend='pymorphy3'."
            )
        candidates = [os.environ.get("MYSTEM_BIN")]
        try:
            # Importing the constants only looks the binary up; pymystem3 downloads it
            # only when Mystem() is created without a path, which kdtext never does.
            from pymystem3 import constants

            candidates.append(constants.MYSTEM_BIN)
            candidates.append(shutil.which(constants.MYSTEM_EXE))
        except ImportError:
            candidates.append(shutil.which("mystem"))
        for path in candidates:
            if path and os.path.isfile(path) and os.access(path, os.X_OK):
                return path
        return None

    def _resolve_backend(self) -> str:
        key = (self.backend, self.mystem_path)
        if getattr(self, "_resolved_for", None) == key:
            return self.backend_
        # First use, or the parameters changed through set_params: look again.
        self.__dict__.pop("_mystem_process", None)
        path = None if self.backend == "pymorphy3" else self._find_mystem()
        if path is None and self.backend == "mystem":
            raise RuntimeError(
                "backend='mystem' needs the Yandex mystem binary, which was not found "
                "(looked at $MYSTEM_BIN, pymystem3's install location and $PATH). Install "
                "it (https://yandex.ru/dev/mystem/) and pass mystem_path='/path/to/mystem', "
                "or use backend='pymorphy3' (pip install pymorphy3 pymorphy3-dicts-ru)."
            )
        self.backend_ = "mystem" if path is not None else "pymorphy3"
        self._mystem_bin = path
        self._resolved_for = key
        if self.backend == "auto":
            logger.info(
                "Lemmatizer(backend='auto') uses %s%s.",
                self.backend_,
                f" at {path}" if path else " (no mystem binary found)",
            )
        return self.backend_

    def _transform(self, texts: list[str]) -> list[str]:
        if self._resolve_backend() == "mystem":
            return self._lemmatize_mystem(texts)
        return self._lemmatize_pymorphy3(texts)

    # -- pymorphy3 -----------------------------------------------------------
    _WORD = re.compile(r"\w+(?:-\w+)*")

    def _morph(self):
        morph = getattr(self, "_morph_analyzer", None)
        if morph is None:
            try:
                import pymorphy3
            except ImportError as exc:
                raise ImportError(
                    "Lemmatizer(backend='pymorphy3') needs pymorphy3 and its Russian "
                    "dictionaries: pip install pymorphy3 pymorphy3-dicts-ru (or kdtext[ru])."
                ) from exc
            morph = self._morph_analyzer = pymorphy3.MorphAnalyzer()
        return morph

    def _lemma(self, word: str) -> str:
        cache = getattr(self, "_lemma_cache", None)
        if cache is None:
            cache = self._lemma_cache = OrderedDict()
            self._cache_hits = self._cache_misses = 0
        lemma = cache.get(word)
        if lemma is not None:
            cache.move_to_end(word)
            self._cache_hits += 1
            return lemma
        self._cache_misses += 1
        lemma = self._morph().parse(word)[0].normal_form
        if self.cache_size:
            cache[word] = lemma
            if len(cache) > self.cache_size:
                cache.popitem(last=False)
        return lemma

    def _lemmatize_pymorphy3(self, texts: list[str]) -> list[str]:
        lemma = self._lemma
        return [" ".join(lemma(w) for w in self._WORD.findall(t.lower())) for t in texts]

    def cache_info(self) -> dict[str, int]:
        """Hits, misses and size of the pymorphy3 lemma cache of this instance.

        Returns
        -------
        info : dict
            ``{"hits": int, "misses": int, "size": int, "maxsize": int}``.

        Examples
        --------
        >>> from kdtext.preprocessing import Lemmatizer
        >>> lem = Lemmatizer(backend="pymorphy3")
        >>> _ = lem.transform(["кошки и кошки"])
        >>> lem.cache_info()
        {'hits': 1, 'misses': 2, 'size': 2, 'maxsize': 100000}
        """
        return {
            "hits": getattr(self, "_cache_hits", 0),
            "misses": getattr(self, "_cache_misses", 0),
            "size": len(getattr(self, "_lemma_cache", None) or ()),
            "maxsize": self.cache_size,
        }

    # -- mystem --------------------------------------------------------------
    def _mystem(self):
        mystem = getattr(self, "_mystem_process", None)
        if mystem is None:
            try:
                from pymystem3 import Mystem
            except ImportError as exc:
                raise ImportError(
                    "Lemmatizer(backend='mystem') needs pymystem3: pip install pymystem3 "
                    "(or kdtext[ru]); or use backend='pymorphy3'."
                ) from exc
            # An explicit path: pymystem3 never tries to download the binary then.
            mystem = self._mystem_process = Mystem(
                mystem_bin=self._mystem_bin,
                grammar_info=False,
                disambiguation=True,
                entire_input=False,
                weight=False,
            )
        return mystem

    def _lemmatize_mystem(self, texts: list[str]) -> list[str]:
        sep = self._SEPARATOR
        out: list[str] = []
        for start in range(0, len(texts), self.batch_size):
            batch = texts[start : start + self.batch_size]
            # One line per request: pymystem3 sends each line separately, so newlines
            # (and every other line break str.splitlines knows) become spaces.
            line = f" {sep} ".join(" ".join(t.split()) for t in batch)
            groups: list[list[str]] = [[]]
            for lemma in self._mystem().lemmatize(line):
                lemma = lemma.strip().lower()
                if lemma == sep:
                    groups.append([])
                elif lemma:
                    groups[-1].append(lemma)
            if len(groups) != len(batch):
                raise RuntimeError(
                    f"mystem returned {len(groups)} texts for a batch of {len(batch)}; the "
                    f"separator word {sep!r} was altered or occurs in the texts. Try "
                    "backend='pymorphy3'."
                )
            out.extend(" ".join(g) for g in groups)
        return out

    # -- pickling ------------------------------------------------------------
    def __getstate__(self) -> dict:
        state = dict(super().__getstate__())  # a copy: the live instance keeps its cache
        # Analyzer, process and cache are rebuilt on next use; the back-end is chosen
        # again, as the unpickling machine may lack the mystem binary found here.
        for key in (
            "_morph_analyzer",
            "_mystem_process",
            "_mystem_bin",
            "_resolved_for",
            "_lemma_cache",
            "_cache_hits",
            "_cache_misses",
        ):
            state.pop(key, None)
        return state


@functools.lru_cache(maxsize=None)
def _load_stop_words(language: str) -> frozenset[str]:
    text = (resources.files("kdtext") / "data" / f"stopwords_{language}.txt").read_text("utf-8")
    words = (line.split("#", 1)[0].strip() for line in text.splitlines())
    return frozenset(_normalise(w) for w in words if w)


def _normalise(word: str) -> str:
    return word.lower().replace("ё", "е")


class StopWordRemover(_TextTransformer):
    """Drop common function words ("и", "в", "the", "of", ...) from texts.

    Texts are split on whitespace, so place it after :class:`TextCleaner` (and
    :class:`Lemmatizer`) to have punctuation removed first. Words are compared
    lower-cased and with ``ё`` read as ``е``; the kept words are returned as
    they were, joined by single spaces.

    The built-in lists were written for kdtext (``kdtext/data``). They hold
    pronouns, prepositions, conjunctions, particles and auxiliary verbs, in
    inflected and dictionary forms, but deliberately not negations ("не",
    "нет", "ни", "not", "no"), which often decide a text's class.

    Parameters
    ----------
    language : {"russian", "english"}, default="russian"
        Which built-in list to use. Ignored when ``stop_words`` is given.
    stop_words : iterable of str or None, default=None
        A custom list that replaces the built-in one.
    extra_stop_words : iterable of str or None, default=None
        Words removed in addition to the list in use.

    Examples
    --------
    >>> from kdtext.preprocessing import StopWordRemover
    >>> StopWordRemover("russian").transform(["я думаю что это не так"])
    ['думаю не']
    >>> StopWordRemover("english", extra_stop_words=["film"]).transform(["the film was not good"])
    ['not good']
    >>> StopWordRemover(stop_words=["foo"]).transform(["foo the bar"])
    ['the bar']
    """

    _parameter_constraints: dict = {
        "language": [StrOptions({"russian", "english"})],
        "stop_words": ["array-like", set, frozenset, None],
        "extra_stop_words": ["array-like", set, frozenset, None],
    }

    def __init__(
        self,
        language: str = "russian",
        stop_words: Iterable[str] | None = None,
        extra_stop_words: Iterable[str] | None = None,
    ) -> None:
        self.language = language
        self.stop_words = stop_words
        self.extra_stop_words = extra_stop_words

    def get_stop_words(self) -> frozenset[str]:
        """The set of words this instance removes (normalised: lower case, ``е`` for ``ё``).

        Returns
        -------
        stop_words : frozenset of str

        Examples
        --------
        >>> from kdtext.preprocessing import StopWordRemover
        >>> "the" in StopWordRemover("english").get_stop_words()
        True
        """
        self._validate_params()
        if self.stop_words is not None:
            words = frozenset(_normalise(str(w)) for w in self.stop_words)
        else:
            words = _load_stop_words(self.language)
        if self.extra_stop_words:
            words = words | {_normalise(str(w)) for w in self.extra_stop_words}
        return words

    def _transform(self, texts: list[str]) -> list[str]:
        stop = self.get_stop_words()
        return [" ".join(w for w in t.split() if _normalise(w) not in stop) for t in texts]
