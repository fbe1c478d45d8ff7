"""Transfer-set augmentation of Tang et al. (2019) [1]_, section 3.3.

A distilled student learns from the teacher's outputs, so it can be trained
on *unlabeled* texts: the teacher labels them. When the labeled data set is
small, Tang et al. enlarge this "transfer set" with cheap, noisy variants of
the training texts. Per word, with one uniform draw ``u``:

- ``u < p_mask``: the word is replaced by a mask token (``"[MASK]"``);
- ``p_mask <= u < p_mask + p_swap``: the word is swapped for another word;
- otherwise the word is kept.

Then, with probability ``p_ngram``, the whole variant is replaced by a random
n-gram of it, with ``n`` drawn uniformly from ``ngram_range``.

Difference from the paper: Tang et al. swap a word for another word *of the
same part of speech* (``p_pos``). That needs a POS tagger for every language,
so here the replacement is drawn from the vocabulary of the given corpus in
proportion to word frequency (never the word itself). ``p_swap`` plays the
role of the paper's ``p_pos``. The defaults are the paper's:
``p_mask = p_swap = 0.1`` and ``p_ngram = 0.25``.

Texts are split into words on whitespace and variants are joined with single
spaces.

References
----------
.. [1] R. Tang, Y. Lu, L. Liu, L. Mou, O. Vechtomova and J. Lin, "Distilling
   Task-Specific Knowledge from BERT into Simple Neural Networks", 2019.
   arXiv:1903.12136.
"""

from __future__ import annotations

import numbers
from collections import Counter
from typing import Any, Iterable

import numpy as np
from sklearn.base import BaseEstimator

from kdtext.base import check_texts, seed_from_random_state

__all__ = ["TransferSetAugmenter", "augment_texts"]


def _check_probability(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not (0.0 <= value <= 1.0):
        raise ValueError(f"{name} must be a probability in [0, 1], got {value!r}.")
    return float(value)


class _Vocabulary:
    """Corpus words with their counts, for frequency-proportional sampling."""

    def __init__(self, tokenized: Iterable[list[str]]):
        counts = Counter(w for words in tokenized for w in words)
        # Sorted for a result that does not depend on dict/set ordering.
        self.words = sorted(counts)
        self.index = {w: i for i, w in enumerate(self.words)}
        self.counts = np.array([counts[w] for w in self.words], dtype=np.int64)
        self.cumsum = np.cumsum(self.counts)
        self.total = int(self.cumsum[-1]) if len(self.words) else 0

    def draw_other(self, word: str, rng: np.random.Generator) -> str:
        """A corpus word other than ``word``, drawn in proportion to frequency.

        ``word`` itself is excluded by drawing from the total mass minus its
        count and skipping its interval. Returns ``word`` when it is the only
        word in the vocabulary.
        """
        k = self.index.get(word)
        count = int(self.counts[k]) if k is not None else 0
        mass = self.total - count
        if mass <= 0:
            return word
        r = int(rng.integers(0, mass))
        if k is not None and r >= int(self.cumsum[k]) - count:
            r += count
        return self.words[int(np.searchsorted(self.cumsum, r, side="right"))]


class TransferSetAugmenter(BaseEstimator):
    """Make noisy variants of texts to enlarge a distillation transfer set.

    Implements the augmentation of Tang et al. (2019, section 3.3) with
    corpus-frequency word swaps in place of POS-guided swaps (see the module
    docstring of :mod:`kdtext.augment`).

    Parameters
    ----------
    n_variants : int, default=10
        Number of variants drawn per (non-empty) text.
    p_mask : float, default=0.1
        Per-word probability of replacing the word by ``mask_token``.
    p_swap : float, default=0.1
        Per-word probability of swapping the word for another corpus word,
        drawn in proportion to its frequency in the texts given to
        :meth:`augment`. Mask and swap are exclusive (one uniform draw per
        word), so ``p_mask + p_swap`` must not exceed 1. The paper's
        ``p_pos``.
    p_ngram : float, default=0.25
        Probability of replacing the whole variant (after masking and
        swapping) by a random contiguous n-gram of it.
    ngram_range : tuple of (int, int), default=(1, 5)
        Inclusive bounds of the n-gram length ``n``, drawn uniformly. A
        variant shorter than ``n`` words is kept whole.
    mask_token : str, default="[MASK]"
        The token that replaces masked words. Use your tokenizer's mask or
        unknown token, e.g. ``tokenizer.mask_token``.
    unique : bool, default=True
        Drop variants that equal any of the given texts (compared after
        whitespace normalisation) or an earlier variant. Fewer than
        ``n_variants`` per text may then come back, and the output no
        longer lines up with ``text_index * n_variants``. With
        ``unique=False`` exactly ``n_variants`` variants come back per
        non-empty text, duplicates included.
    random_state : int, RandomState instance, Generator or None, default=None
        Seeds a private ``numpy.random.default_rng``; numpy's and Python's
        global random states are never used. An int gives the same variants
        on every call of :meth:`augment`.

    See Also
    --------
    augment_texts : The same as a function.

    Notes
    -----
    Texts with no word (empty or only whitespace) produce no variants.

    References
    ----------
    .. [1] R. Tang et al., "Distilling Task-Specific Knowledge from BERT into
       Simple Neural Networks", 2019. arXiv:1903.12136.

    Examples
    --------
    >>> from kdtext.augment import TransferSetAugmenter
    >>> aug = TransferSetAugmenter(n_variants=3, p_mask=1.0, p_swap=0.0, p_ngram=0.0,
    ...                            unique=False, random_state=0)
    >>> aug.augment(["a good film", ""])
    ['[MASK] [MASK] [MASK]', '[MASK] [MASK] [MASK]', '[MASK] [MASK] [MASK]']
    >>> aug = TransferSetAugmenter(n_variants=4, random_state=0)
    >>> variants = aug.augment(["a good film with a fine cast", "a dull film"])
    >>> len(variants) <= 8
    True
    """

    def __init__(
        self,
        n_variants: int = 10,
        *,
        p_mask: float = 0.1,
        p_swap: float = 0.1,
        p_ngram: float = 0.25,
        ngram_range: tuple[int, int] = (1, 5),
        mask_token: str = "[MASK]",
        unique: bool = True,
        random_state: Any = None,
    ):
        self.n_variants = n_variants
        self.p_mask = p_mask
        self.p_swap = p_swap
        self.p_ngram = p_ngram
        self.ngram_range = ngram_range
        self.mask_token = mask_token
        self.unique = unique
        self.random_state = random_state

    def _check_params(self) -> tuple[int, float, float, float, int, int]:
        n = self.n_variants
        if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
            raise ValueError(f"n_variants must be an int >= 1, got {n!r}.")
        p_mask = _check_probability(self.p_mask, "p_mask")
        p_swap = _check_probability(self.p_swap, "p_swap")
        p_ngram = _check_probability(self.p_ngram, "p_ngram")
        if p_mask + p_swap > 1.0 + 1e-12:
            raise ValueError(
                f"p_mask + p_swap must be <= 1 (a word is masked or swapped, not both), got "
                f"p_mask={p_mask!r} and p_swap={p_swap!r}."
            )
        rng_ = self.ngram_range
        if (
            not isinstance(rng_, (tuple, list))
            or len(rng_) != 2
            or any(isinstance(v, bool) or not isinstance(v, numbers.Integral) for v in rng_)
            or not (1 <= rng_[0] <= rng_[1])
        ):
            raise ValueError(
                f"ngram_range must be a pair of ints (min_n, max_n) with 1 <= min_n <= max_n, "
                f"got {rng_!r}."
            )
        if not isinstance(self.mask_token, str) or not self.mask_token:
            raise ValueError(f"mask_token must be a non-empty str, got {self.mask_token!r}.")
        if not isinstance(self.unique, (bool, np.bool_)):
            raise ValueError(f"unique must be True or False, got {self.unique!r}.")
        return int(n), p_mask, p_swap, p_ngram, int(rng_[0]), int(rng_[1])

    def augment(self, texts: Any) -> list[str]:
        """Return new variants of ``texts`` (the originals are not included).

        The swap vocabulary is built from ``texts`` themselves.

        Parameters
        ----------
        texts : list-like of str
            The texts to vary, e.g. the training set.

        Returns
        -------
        variants : list of str
            With ``unique=False``: ``n_variants`` per non-empty text, in
            order (text 0 variant 0, ..., text 0 variant n-1, text 1
            variant 0, ...). With ``unique=True``: the same order with
            duplicates and copies of the given texts removed.
        """
        n_variants, p_mask, p_swap, p_ngram, min_n, max_n = self._check_params()
        texts = check_texts(texts, name="texts", allow_empty=True)
        rng = np.random.default_rng(seed_from_random_state(self.random_state))
        tokenized = [t.split() for t in texts]
        vocab = _Vocabulary(tokenized)
        mask_token = self.mask_token

        seen: set[str] = set()
        if self.unique:
            seen.update(texts)
            seen.update(" ".join(words) for words in tokenized)

        out: list[str] = []
        for words in tokenized:
            if not words:
                continue
            n_words = len(words)
            for _ in range(n_variants):
                u = rng.random(n_words)
                new = list(words)
                for i in range(n_words):
                    if u[i] < p_mask:
                        new[i] = mask_token
                    elif u[i] < p_mask + p_swap:
                        new[i] = vocab.draw_other(words[i], rng)
                if p_ngram > 0.0 and rng.random() < p_ngram:
                    n = min(int(rng.integers(min_n, max_n + 1)), n_words)
                    start = int(rng.integers(0, n_words - n + 1))
                    new = new[start : start + n]
                variant = " ".join(new)
                if self.unique:
                    if variant in seen:
                        continue
                    seen.add(variant)
                out.append(variant)
        return out


def augment_texts(
    texts: Any,
    n_variants: int = 10,
    *,
    p_mask: float = 0.1,
    p_swap: float = 0.1,
    p_ngram: float = 0.25,
    ngram_range: tuple[int, int] = (1, 5),
    mask_token: str = "[MASK]",
    unique: bool = True,
    random_state: Any = None,
) -> list[str]:
    """Make noisy variants of ``texts`` (Tang et al., 2019); see :class:`TransferSetAugmenter`.

    Parameters
    ----------
    texts : list-like of str
    n_variants, p_mask, p_swap, p_ngram, ngram_range, mask_token, unique, random_state
        As in :class:`TransferSetAugmenter`.

    Returns
    -------
    variants : list of str
        Only the new variants, not the originals.

    Examples
    --------
    >>> from kdtext.augment import augment_texts
    >>> texts = ["the cast is great", "the plot is thin"]
    >>> variants = augment_texts(texts, n_variants=5, random_state=0)
    >>> variants == augment_texts(texts, n_variants=5, random_state=0)
    True
    >>> any(v in texts for v in variants)
    False
    >>> augment_texts(["a b c d e f"], 2, p_mask=0.0, p_swap=0.0, p_ngram=1.0,
    ...               ngram_range=(2, 2), unique=False, random_state=0)
    ['e f', 'd e']
    """
    return TransferSetAugmenter(
        n_variants=n_variants,
        p_mask=p_mask,
        p_swap=p_swap,
        p_ngram=p_ngram,
        ngram_range=ngram_range,
        mask_token=mask_token,
        unique=unique,
        random_state=random_state,
    ).augment(texts)
