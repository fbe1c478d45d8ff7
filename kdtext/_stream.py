"""Transfer sets too large for memory: texts re-read chunk by chunk, and per-text state in numpy arrays (private).

:class:`StreamedTexts` is the texts of a re-iterable chunked source (a
:class:`~kdtext.TextFiles`), optionally only those at some sorted positions,
read again on every pass and never held at once. The distiller de-duplicates
a stream by 16-byte text hashes (:func:`stream_keys`, :func:`distinct_keys`,
a bucket sort in bounded memory) and keeps its per-text arrays in
memory-mapped temporary files (:func:`scratch_array`); the neural students
tokenize it chunk by chunk into a disk-backed store. No Python object per
text, and the anonymous memory does not grow with the number of texts.
"""

from __future__ import annotations

import hashlib
import math
import tempfile
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np

from .base import encodable_texts

__all__ = ["StreamedTexts", "argsort_keys", "argsort_lengths", "bucket_order", "distinct_keys", "flatnonzero_blocks",
           "scratch_array", "scratch_range", "shuffled_range", "stream_keys", "take_rows", "take_texts", "text_keys"]

#: Rows per block of the bounded-memory sorts and copies here (bounds their temporary arrays).
_BLOCK = 1 << 18
#: From this size (bytes) :func:`scratch_array` maps an array to a temporary file.
SCRATCH_MIN_BYTES = 1 << 22


def text_keys(texts: Sequence[str]) -> np.ndarray:
    """The 16-byte blake2b keys of ``texts`` (the teacher cache's keys) as an ``S16`` array.

    ``S16`` compares and sorts the raw 16 bytes; never read its items as Python
    ``bytes`` (that strips trailing NUL bytes): view it as ``uint8`` rows.
    """
    h = hashlib.blake2b
    # surrogatepass: a str with lone surrogates still has a key (as kdtext.distillation._text_key)
    data = b"".join(h(t.encode("utf-8", "surrogatepass"), digest_size=16).digest() for t in texts)
    return np.frombuffer(data, dtype="S16").copy() if data else np.zeros(0, dtype="S16")


def scratch_array(shape: int | tuple[int, ...], dtype: Any, *, fill: Any = None,
                  min_bytes: int | None = None) -> np.ndarray:
    """An array for per-text state: in an unlinked temporary file (memory-mapped) when large, else in memory.

    A streamed fit keeps a few bytes per text (keys, positions, labels,
    teacher outputs); in a mapped file they are page cache that the kernel
    writes back and drops under pressure, not anonymous memory, so the fit's
    resident memory does not grow with the number of texts. The file has no
    name (``tempfile.TemporaryFile`` in ``$TMPDIR``) and is freed with the last
    view of the array. ``fill``: the initial value (a mapped file starts as
    zeros); ``min_bytes``: the size from which the array is mapped (default
    :data:`SCRATCH_MIN_BYTES`).
    """
    shape = (int(shape),) if np.ndim(shape) == 0 else tuple(int(d) for d in shape)
    dtype = np.dtype(dtype)
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if nbytes < (SCRATCH_MIN_BYTES if min_bytes is None else min_bytes):
        return np.empty(shape, dtype) if fill is None else np.full(shape, fill, dtype)
    with tempfile.TemporaryFile(prefix="kdtext-scratch-") as f:
        f.truncate(nbytes)
        out = np.memmap(f, dtype=dtype, mode="r+", shape=shape)  # the mapping keeps the file alive
    if fill is not None and fill != 0:
        flat = out.reshape(-1)
        for s in range(0, len(flat), _BLOCK):
            flat[s : s + _BLOCK] = fill
    return out


def scratch_range(n: int, *, min_bytes: int | None = None) -> np.ndarray:
    """``np.arange(n)`` (int64) in a :func:`scratch_array`, written block by block."""
    out = scratch_array(n, np.int64, min_bytes=min_bytes)
    for s in range(0, n, _BLOCK):
        out[s : s + _BLOCK] = np.arange(s, min(n, s + _BLOCK))
    return out


def shuffled_range(n: int, rng: np.random.Generator, *, min_bytes: int | None = None) -> np.ndarray:
    """``rng.permutation(n)`` (the same numbers, the same draws) in a :func:`scratch_array`."""
    out = scratch_range(n, min_bytes=min_bytes)
    # Generator.permutation(n) is np.arange(n) shuffled in place; shuffle takes its fast path on a plain ndarray only
    rng.shuffle(out.view(np.ndarray))
    return out


def stream_keys(chunks: Iterable[Sequence[str]]) -> np.ndarray:
    """:func:`text_keys` of every text of ``chunks``, in order; written to a temporary file and mapped when large."""
    with tempfile.TemporaryFile(prefix="kdtext-keys-") as f:
        n = 0
        for chunk in chunks:
            f.write(text_keys(chunk).tobytes())  # S16 tobytes: the raw 16 bytes of each key, NUL bytes included
            n += len(chunk)
        f.flush()
        if n * 16 < SCRATCH_MIN_BYTES:
            f.seek(0)
            return np.frombuffer(f.read(), dtype="S16").copy() if n else np.zeros(0, dtype="S16")
        return np.memmap(f, dtype="S16", mode="r", shape=(n,))


def _buckets(keys: np.ndarray, bits: int) -> np.ndarray:
    """The leading ``bits`` bits of each 16-byte key: a bucket number that keeps the keys' byte order."""
    raw = np.ascontiguousarray(keys).view(np.uint8).reshape(len(keys), 16)
    return ((raw[:, 0].astype(np.int64) << 8) | raw[:, 1]) >> (16 - bits)


def bucket_order(n: int, bucket_of: Callable[[int, int], np.ndarray], n_buckets: int, *,
                 block: int | None = None, min_bytes: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """A stable counting sort of the positions ``0..n-1`` by a small bucket number, in bounded memory.

    ``bucket_of(start, stop)`` gives the bucket (``0 <= b < n_buckets``) of
    positions ``start..stop-1``; it is called twice per block of ``block``
    positions, so memory holds one block. Returns ``(order, counts)``:
    ``order`` (a :func:`scratch_array`) lists the positions of bucket 0, then
    bucket 1, ..., each in increasing order; ``counts[b]`` is bucket ``b``'s size.
    """
    block = _BLOCK if block is None else block
    counts = np.zeros(n_buckets, dtype=np.int64)
    for s in range(0, n, block):
        counts += np.bincount(bucket_of(s, min(n, s + block)), minlength=n_buckets)
    order = scratch_array(n, np.int64, min_bytes=min_bytes)
    cursor = np.cumsum(counts) - counts
    for s in range(0, n, block):  # block by block, each bucket's positions appended in order
        b = bucket_of(s, min(n, s + block))
        by_bucket = np.argsort(b, kind="stable")
        sorted_b = b[by_bucket]
        c = np.bincount(b, minlength=n_buckets)
        first_in_block = np.cumsum(c) - c
        order[cursor[sorted_b] + np.arange(len(b)) - first_in_block[sorted_b]] = s + by_bucket
        cursor += c
    return order, counts


def argsort_lengths(lengths: np.ndarray, *, block: int | None = None, min_bytes: int | None = None) -> np.ndarray:
    """``np.argsort(-lengths, kind="stable")`` (longest first, ties in position order) in bounded memory.

    ``lengths`` are token counts (small non-negative ints). Up to ``block`` of
    them: ``np.argsort``; more: :func:`bucket_order` by length, the result in a
    :func:`scratch_array`. The two give the same order.
    """
    n, block = len(lengths), _BLOCK if block is None else block
    if n <= block:
        return np.argsort(-np.asarray(lengths), kind="stable")
    top = max(int(np.max(lengths[s : s + block])) for s in range(0, n, block))
    order, _ = bucket_order(n, lambda s, e: top - np.asarray(lengths[s:e], dtype=np.int64), top + 1, block=block,
                            min_bytes=min_bytes)
    return order


def argsort_keys(keys: np.ndarray, *, block: int | None = None) -> np.ndarray:
    """A stable argsort of ``S16`` keys (equal keys: smallest position first) in bounded memory.

    Up to ``block`` keys: ``np.argsort``. More: a bucket sort on the keys'
    leading bits (so that a bucket holds about ``block`` keys; the keys are
    hashes, so buckets are even), each bucket sorted in memory, the order
    written to a :func:`scratch_array`: memory holds one block, never all keys.
    """
    n, block = len(keys), _BLOCK if block is None else block
    if n <= block:
        return np.argsort(np.asarray(keys), kind="stable")
    bits = min(16, max(1, math.ceil(math.log2(n / block))))
    order, counts = bucket_order(n, lambda s, e: _buckets(keys[s:e], bits), 1 << bits, block=block)
    starts = np.cumsum(counts) - counts
    for a, z in zip(starts.tolist(), (starts + counts).tolist()):
        if z - a > 1:  # positions in a bucket are increasing, so a stable sort of its keys keeps ties in order
            seg = np.asarray(order[a:z])
            order[a:z] = seg[np.argsort(keys[seg], kind="stable")]
    return order


def distinct_keys(keys: np.ndarray, labels: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """De-duplicate texts by their keys in bounded memory: ``(first, gold)``.

    ``first`` holds the position of each distinct key's first occurrence, in
    increasing order (distinct texts keep the order in which they first
    appear, as a dict would). ``gold[j]`` is the label of distinct text ``j``:
    the last label ``>= 0`` among its occurrences in ``labels`` (as assigning
    them in text order would leave it), -1 if none or if ``labels`` is None.
    Both are :func:`scratch_array` s; memory holds one block of the sort at a
    time (:func:`argsort_keys`).
    """
    n = len(keys)
    if n == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    order = argsort_keys(keys)
    is_first = scratch_array(n, bool, fill=False)
    gold_at = None if labels is None else scratch_array(n, np.int64, fill=-1)  # by position of the first occurrence
    prev, leader = None, -1
    for s in range(0, n, _BLOCK):
        o = np.asarray(order[s : s + _BLOCK])
        k = keys[o]
        new = np.empty(len(o), dtype=bool)
        new[0] = prev is None or k[0] != prev
        new[1:] = k[1:] != k[:-1]
        is_first[o[new]] = True
        if gold_at is not None:
            y = labels[o]
            at = np.where(new, np.arange(len(o)), -1)
            np.maximum.accumulate(at, out=at)  # the index of each key's group start in this block, or -1
            lead = np.where(at >= 0, o[np.maximum(at, 0)], leader)
            lab = y >= 0
            gold_at[lead[lab]] = y[lab]  # in position order within a group: the last label wins
            leader = int(lead[-1])
        prev = k[-1]
    del order
    first = flatnonzero_blocks(is_first)
    gold = scratch_array(len(first), np.int64, fill=-1) if gold_at is None else take_rows(gold_at, first)
    return first, gold


def flatnonzero_blocks(mask: np.ndarray, *, invert: bool = False, min_bytes: int | None = None) -> np.ndarray:
    """``np.flatnonzero(mask)`` (of ``~mask`` with ``invert``) into a :func:`scratch_array`, block by block."""
    n = len(mask)
    count = sum(int(np.count_nonzero(mask[s : s + _BLOCK])) for s in range(0, n, _BLOCK))
    out = scratch_array(n - count if invert else count, np.int64, min_bytes=min_bytes)
    j = 0
    for s in range(0, n, _BLOCK):
        m = np.asarray(mask[s : s + _BLOCK])
        f = np.flatnonzero(~m if invert else m) + s
        out[j : j + len(f)] = f
        j += len(f)
    return out


def class_counts(y_idx: np.ndarray, n_classes: int = 0) -> tuple[np.ndarray, int]:
    """``(texts per class, texts without a gold label)`` of ``y_idx`` (class indices, ``-1``: none), block by block.

    The counts have at least ``n_classes`` entries."""
    counts = np.zeros(n_classes, np.int64)
    n_unlabeled = 0
    for s in range(0, len(y_idx), _BLOCK):
        y = np.asarray(y_idx[s : s + _BLOCK])
        labeled = y >= 0
        n_unlabeled += len(y) - int(np.count_nonzero(labeled))
        c = np.bincount(y[labeled])
        if len(c) > len(counts):
            counts = np.concatenate([counts, np.zeros(len(c) - len(counts), np.int64)])
        counts[: len(c)] += c
    return counts, n_unlabeled


def _rank_in_class(c: np.ndarray, seen: np.ndarray) -> np.ndarray:
    """For each entry of ``c`` (class indices, in order): how many of its class came before it, ``seen`` included."""
    order = np.argsort(c, kind="stable")
    sc = c[order]
    starts = np.flatnonzero(np.r_[True, sc[1:] != sc[:-1]])
    within = np.arange(len(sc)) - np.repeat(starts, np.diff(np.r_[starts, len(sc)]))
    rank = np.empty(len(c), np.int64)
    rank[order] = within + seen[sc]
    return rank


def stratified_holdout(perm: np.ndarray, y_idx: np.ndarray, counts: np.ndarray, n_val: int,
                       mask: np.ndarray) -> int:
    """Mark a stratified validation split of about ``n_val`` texts in ``mask``; return how many were marked.

    Every class gives its first ``min(round(n_c * n_val / n), n_c - 1)``
    members in the order of ``perm`` (a permutation of the texts); if the
    per-class rounding falls short of ``n_val``, the texts not taken are
    added in ``perm`` order as long as their class keeps at least one
    training text. Block by block: memory holds one block of ``perm`` and one
    number per class.
    """
    n = len(perm)
    k = np.maximum(np.minimum(np.round(counts * n_val / n).astype(np.int64), counts - 1), 0)
    seen = np.zeros(len(counts), np.int64)
    for s in range(0, n, _BLOCK):
        p = np.asarray(perm[s : s + _BLOCK])
        c = np.asarray(y_idx[p])
        take = _rank_in_class(c, seen) < k[c]
        mask[p[take]] = True
        seen += np.bincount(c, minlength=len(counts))
    marked = int(k.sum())
    need = n_val - marked
    if need <= 0:
        return marked
    budget = counts - k - 1  # a class may give texts while more than one of its texts is left for training
    seen[:] = 0
    for s in range(0, n, _BLOCK):
        p = np.asarray(perm[s : s + _BLOCK])
        p = p[~np.asarray(mask[p])]
        c = np.asarray(y_idx[p])
        eligible = np.flatnonzero(_rank_in_class(c, seen) < budget[c])[:need]
        mask[p[eligible]] = True
        seen += np.bincount(c, minlength=len(counts))
        need -= len(eligible)
        marked += len(eligible)
        if need == 0:
            break
    return marked


def take_rows(a: np.ndarray, idx: np.ndarray, *, min_bytes: int | None = None) -> np.ndarray:
    """``a[idx]`` into a :func:`scratch_array`, block by block (memory holds one block of ``idx``)."""
    out = scratch_array((len(idx),) + a.shape[1:], a.dtype, min_bytes=min_bytes)
    for s in range(0, len(idx), _BLOCK):
        out[s : s + _BLOCK] = a[np.asarray(idx[s : s + _BLOCK])]
    return out


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
        positions = idx if self.positions is None else take_rows(self.positions, idx)
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
