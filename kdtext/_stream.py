"""Transfer sets too large for memory: texts re-read chunk by chunk, and per-text state in numpy arrays (private).

:class:`StreamedTexts` is the texts of a re-iterable chunked source (a
:class:`~kdtext.TextFiles`), optionally only those at some sorted positions,
read again on every pass and never held at once. The distiller de-duplicates
a stream by 16-byte text hashes (:func:`text_keys`, :func:`dedup_keys`) and
the neural students tokenize it chunk by chunk into a disk-backed store; both
hold O(1) numpy bytes per text, never a Python object per text.
"""

from __future__ import annotations

import hashlib
from typing import Any, Iterator, Sequence

import numpy as np

from .base import encodable_texts

__all__ = ["StreamedTexts", "dedup_keys", "take_texts", "text_keys"]

#: Rows per block in :func:`dedup_keys`' comparisons (bounds its temporary arrays).
_BLOCK = 1 << 20


def text_keys(texts: Sequence[str]) -> np.ndarray:
    """The 16-byte blake2b keys of ``texts`` (the teacher cache's keys) as an ``S16`` array.

    ``S16`` compares and sorts the raw 16 bytes; never read its items as Python
    ``bytes`` (that strips trailing NUL bytes): view it as ``uint8`` rows.
    """
    h = hashlib.blake2b
    # surrogatepass: a str with lone surrogates still has a key (as kdtext.distillation._text_key)
    data = b"".join(h(t.encode("utf-8", "surrogatepass"), digest_size=16).digest() for t in texts)
    return np.frombuffer(data, dtype="S16").copy() if data else np.zeros(0, dtype="S16")


def dedup_keys(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """De-duplicate texts by their keys: ``(first, inverse)``.

    ``first`` holds the position of each distinct key's first occurrence, in
    increasing order (so distinct texts keep the order in which they first
    appear, as a dict would); ``inverse[i]`` is the index into ``first`` of
    text ``i``'s key. A stable sort of the keys, no hash table: about 41 bytes
    per text at the peak (keys, sort order, group ids, inverse).
    """
    keys = np.asarray(keys)
    n = len(keys)
    if n == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    order = np.argsort(keys, kind="stable")  # equal keys: smallest position first
    new = np.empty(n, dtype=bool)
    new[0] = True
    for s in range(1, n, _BLOCK):  # new[k]: sorted key k differs from key k-1; in blocks, no sorted copy
        e = min(n, s + _BLOCK)
        new[s:e] = keys[order[s:e]] != keys[order[s - 1 : e - 1]]
    group = np.cumsum(new, dtype=np.int64)
    group -= 1
    first = order[new]  # per group, in key order
    del new
    by_first = np.argsort(first, kind="stable")
    renumber = np.empty(len(first), dtype=np.int64)
    renumber[by_first] = np.arange(len(first), dtype=np.int64)
    inverse = np.empty(n, dtype=np.int64)
    for s in range(0, n, _BLOCK):
        e = min(n, s + _BLOCK)
        inverse[order[s:e]] = renumber[group[s:e]]
    return first[by_first], inverse


class StreamedTexts:
    """The texts of a re-iterable chunked source, optionally only those at sorted ``positions``.

    Parameters
    ----------
    source : object with ``iter_chunks()``
        Yields lists of str, the same texts in the same order on every call
        (a :class:`~kdtext.TextFiles`).
    positions : array-like of int or None
        Increasing positions in the source of the texts this stream holds;
        None: all of them (then ``length`` gives their number).
    length : int or None
        The number of texts in ``source`` when ``positions`` is None.
    encodable : bool, default=False
        Pass each chunk through :func:`kdtext.base.encodable_texts`.
    """

    def __init__(self, source: Any, positions: Any = None, *, length: int | None = None, encodable: bool = False):
        self.source = source
        self.positions = None if positions is None else np.asarray(positions, dtype=np.int64)
        if self.positions is None and length is None:
            raise ValueError("StreamedTexts needs positions or the source's length")
        self._length = len(self.positions) if self.positions is not None else int(length)
        self.encodable = encodable

    def __len__(self) -> int:
        return self._length

    def __repr__(self) -> str:
        return f"StreamedTexts({self._length} texts of {self.source!r})"

    def iter_chunks(self) -> Iterator[list[str]]:
        """The texts, chunk by chunk (at most one source chunk each), in order."""
        pos, k, start, seen = self.positions, 0, 0, 0
        for chunk in self.source.iter_chunks():
            end = start + len(chunk)
            if pos is None:
                out = chunk
            else:
                j = int(np.searchsorted(pos, end, side="left"))
                out = chunk if j - k == len(chunk) else [chunk[i] for i in (pos[k:j] - start).tolist()]
                k = j
            start = end
            if out:
                seen += len(out)
                yield encodable_texts(out) if self.encodable else out
            if pos is not None and k == len(pos):
                break  # nothing more wanted from this pass: stop reading
        if seen != self._length:
            raise RuntimeError(
                f"The transfer set changed while it was being read: this pass gave {seen} texts where an earlier "
                f"one gave {self._length}. Do not modify, add or remove the files of {self.source!r} during fit."
            )

    def __iter__(self) -> Iterator[str]:
        for chunk in self.iter_chunks():
            yield from chunk

    def subset(self, idx: Any) -> "StreamedTexts":
        """The texts at the increasing indices ``idx`` of this stream, as a stream."""
        idx = np.asarray(idx, dtype=np.int64)
        positions = idx if self.positions is None else self.positions[idx]
        return StreamedTexts(self.source, positions, encodable=self.encodable)

    def as_encodable(self) -> "StreamedTexts":
        """This stream with :func:`~kdtext.base.encodable_texts` applied to each chunk."""
        if self.encodable:
            return self
        out = StreamedTexts(self.source, self.positions, length=self._length, encodable=True)
        return out

    def __getitem__(self, i: int) -> str:
        """One text, by a scan of the source (for error messages; slow)."""
        i = int(i)
        if not 0 <= i < self._length:
            raise IndexError(i)
        for text in self.subset([i]):
            return text
        raise IndexError(i)  # pragma: no cover - the scan raised RuntimeError first


def take_texts(texts: Any, idx: np.ndarray) -> Any:
    """``[texts[i] for i in idx]`` for a list; a sub-stream, read lazily, for a :class:`StreamedTexts`."""
    if isinstance(texts, StreamedTexts):
        return texts.subset(idx)
    return [texts[i] for i in idx]
