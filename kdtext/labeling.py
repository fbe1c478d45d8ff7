"""Soft-label a large corpus with a fitted teacher, in shards, resumably, on one machine or a Dask cluster.

Two public names:

- :class:`TextFiles`: the texts of Parquet / CSV / newline-delimited text
  files as an iterable, read in chunks, in a fixed order; usable wherever
  kdtext takes texts (``list(TextFiles(...))``) and cut into shards with
  stable, content-derived ids by :meth:`TextFiles.iter_shards`.
- :func:`label_texts`: label every shard with the teacher and write it into
  the ``memory`` cache format of :class:`~kdtext.DistillationClassifier`
  (``out/kdtext_teacher_cache/<teacher fingerprint>/shard-<id>.npz``), so
  ``DistillationClassifier(teacher, student, memory=out).fit(texts)`` finds
  every label there and runs the teacher on nothing.

The unit of work is :func:`label_shard`: it labels one shard and writes its
file atomically under a name derived from the shard's texts, or does nothing
when that file exists. Engines only decide where it runs: in this process
(``client=None``) or on Dask workers (a ``dask.distributed.Client``), each
holding one copy of the teacher. A Ray or Spark adapter would call the same
function (``docs/scaling.rst``).
"""

from __future__ import annotations

import codecs
import glob
import hashlib
import logging
import os
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Iterable, Iterator, Sequence

import numpy as np

from .base import is_missing

logger = logging.getLogger(__name__)

__all__ = ["TextFiles", "LabelingResult", "label_texts", "label_shard", "iter_shards", "shard_id", "load_teacher"]

_FORMATS = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv", ".tsv": "tsv", ".txt": "text", ".text": "text"}
_COMPRESSION = (".gz", ".bz2", ".xz", ".zst", ".zip")
_SHARD_PREFIX = "shard-"
DEFAULT_SHARD_SIZE = 8192


# --------------------------------------------------------------------------- files
class TextFiles:
    """The texts of Parquet, CSV or newline-delimited text files, read in chunks.

    An iterable of ``str`` over one or more files, in a fixed order: the
    patterns in the order given, the files of each glob pattern sorted by
    name. Nothing is read until iterated; memory stays at one chunk. Usable
    wherever kdtext takes texts: ``list(TextFiles(...))`` materialises them,
    and :func:`label_texts` / :meth:`iter_shards` stream them.

    Parameters
    ----------
    paths : str, path-like or sequence of them
        Files or glob patterns (``"corpus/*.parquet"``, ``"data/**/*.csv"``
        with ``recursive`` globbing). A pattern that matches nothing and a
        missing file are errors, raised here.
    text_column : str, default="text"
        The column holding the texts (Parquet and CSV; unused for text files).
    format : {"auto", "parquet", "csv", "tsv", "text"}, default="auto"
        "auto" tells each file's format by its extension: ``.parquet``/``.pq``,
        ``.csv``, ``.tsv``, ``.txt``/``.text`` (CSV, TSV and text files may be
        compressed: ``.csv.gz`` etc.). "text" is one text per line, the line
        break removed; every line is a text, empty lines included.
    encoding : str, default="utf-8"
        Encoding of CSV, TSV and text files (Parquet strings are UTF-8 by
        definition). A file that does not decode is an error naming the file
        and the byte offset of the first undecodable byte.
    chunk_size : int, default=65536
        Rows read at a time (pandas ``chunksize``, pyarrow batch size).

    Notes
    -----
    CSV fields are read as strings with no NA conversion: an empty (or absent)
    field is the empty text, and "NA" or "null" are texts. A Parquet null is an
    error naming the file and row. Parquet
    needs ``pyarrow``, CSV ``pandas`` (``pip install "kdtext[dask]"`` installs
    both).

    There is no ``len()``: ``list()`` would call it first and, for CSV and text
    files, it costs a full read. :meth:`count` gives the number of texts
    (from Parquet metadata, else by one read, then cached).

    Examples
    --------
    >>> from kdtext import TextFiles
    >>> texts = TextFiles("corpus/*.parquet", text_column="text")  # doctest: +SKIP
    >>> texts.count()  # doctest: +SKIP
    1000000
    >>> for shard, chunk in texts.iter_shards(8192):  # doctest: +SKIP
    ...     ...
    """

    def __init__(
        self,
        paths: str | os.PathLike | Sequence[str | os.PathLike],
        text_column: str = "text",
        format: str = "auto",
        encoding: str = "utf-8",
        chunk_size: int = 65536,
    ):
        if format not in {"auto", "parquet", "csv", "tsv", "text"}:
            raise ValueError(
                f"format must be one of 'auto', 'parquet', 'csv', 'tsv', 'text'; got {format!r}."
            )
        if not isinstance(text_column, str) or not text_column:
            raise TypeError(f"text_column must be a non-empty column name (str), got {text_column!r}.")
        if not isinstance(chunk_size, (int, np.integer)) or isinstance(chunk_size, bool) or chunk_size < 1:
            raise ValueError(f"chunk_size must be a positive int (rows read at a time), got {chunk_size!r}.")
        try:
            codecs.lookup(encoding)
        except (LookupError, TypeError):
            raise ValueError(f"encoding={encoding!r} is not a known text encoding (e.g. 'utf-8', 'cp1251').") from None
        self.text_column = text_column
        self.format = format
        self.encoding = encoding
        self.chunk_size = int(chunk_size)
        self.files = _resolve_paths(paths)
        self.formats = [self._format_of(f) for f in self.files]
        self._count: int | None = None

    def __repr__(self) -> str:
        shown = ", ".join(repr(os.fspath(f)) for f in self.files[:3]) + (", ..." if len(self.files) > 3 else "")
        return f"TextFiles([{shown}] ({len(self.files)} files), text_column={self.text_column!r})"

    def _format_of(self, path: Path) -> str:
        if self.format != "auto":
            return self.format
        suffixes = [s.lower() for s in path.suffixes]
        if suffixes and suffixes[-1] in _COMPRESSION:
            suffixes = suffixes[:-1]
        fmt = _FORMATS.get(suffixes[-1] if suffixes else "")
        if fmt is None:
            raise ValueError(
                f"Cannot tell the format of {path} from its extension; expected one of "
                f"{sorted(_FORMATS)} (optionally compressed), or pass format='parquet', 'csv', 'tsv' or 'text'."
            )
        return fmt

    # ------------------------------------------------------------ reading
    def iter_chunks(self) -> Iterator[list[str]]:
        """Yield the texts chunk by chunk (lists of at most ``chunk_size`` str), file by file."""
        for path, fmt in zip(self.files, self.formats):
            reader = {"parquet": self._parquet_chunks, "csv": self._csv_chunks, "tsv": self._csv_chunks,
                      "text": self._text_chunks}[fmt]
            row = 0
            for chunk in reader(path, fmt):
                _check_chunk(chunk, path, row)
                row += len(chunk)
                if chunk:
                    yield chunk

    def __iter__(self) -> Iterator[str]:
        for chunk in self.iter_chunks():
            yield from chunk

    def iter_shards(self, shard_size: int = DEFAULT_SHARD_SIZE) -> Iterator[tuple[str, list[str]]]:
        """Yield ``(shard_id, texts)``: consecutive runs of ``shard_size`` texts across the files.

        The id is a hash of the shard's texts (:func:`shard_id`), so a resumed
        job meets the same ids for the same corpus, wherever the files moved.
        """
        return iter_shards(self.iter_chunks(), shard_size)

    def count(self) -> int:
        """The number of texts: Parquet row counts from the file metadata, other files by one read (cached)."""
        if self._count is None:
            total = 0
            for path, fmt in zip(self.files, self.formats):
                if fmt == "parquet":
                    total += _parquet_file(path).metadata.num_rows
                else:
                    total += sum(len(c) for c in {"csv": self._csv_chunks, "tsv": self._csv_chunks,
                                                 "text": self._text_chunks}[fmt](path, fmt))
            self._count = total
        return self._count

    def _parquet_chunks(self, path: Path, fmt: str) -> Iterator[list]:
        pf = _parquet_file(path)
        names = pf.schema_arrow.names
        if self.text_column not in names:
            raise _missing_column(path, self.text_column, names)
        col_type = pf.schema_arrow.field(self.text_column).type
        import pyarrow as pa

        if not (pa.types.is_string(col_type) or pa.types.is_large_string(col_type)
                or getattr(pa.types, "is_string_view", lambda t: False)(col_type)):
            raise TypeError(
                f"Column {self.text_column!r} of {path} holds {col_type}, not strings. Point text_column at the "
                "text column, or convert it (e.g. df[col].astype(str)) when writing the file."
            )
        pool = pa.default_memory_pool()
        for batch in pf.iter_batches(batch_size=self.chunk_size, columns=[self.text_column]):
            texts = batch.column(0).to_pylist()
            del batch
            # Arrow's allocator (mimalloc) keeps freed pages: one pass over a 1M-row file left 59 MB of anonymous
            # memory (16 MB when handed back per batch, for about 5% more read time)
            pool.release_unused()
            yield texts

    def _csv_chunks(self, path: Path, fmt: str) -> Iterator[list]:
        pd = _import("pandas", "CSV files")
        sep = "\t" if fmt == "tsv" else ","
        try:
            header = pd.read_csv(path, sep=sep, nrows=0, encoding=self.encoding).columns.tolist()
            if self.text_column not in header:
                raise _missing_column(path, self.text_column, header)
            reader = pd.read_csv(path, sep=sep, usecols=[self.text_column], dtype=str, keep_default_na=False,
                                 na_values=[], chunksize=self.chunk_size, encoding=self.encoding)
            with reader:
                for frame in reader:
                    yield frame[self.text_column].tolist()
        except UnicodeError as exc:  # UnicodeDecodeError, or e.g. a UTF-16 file without its BOM
            raise _decode_error(path, self.encoding, exc) from exc

    def _text_chunks(self, path: Path, fmt: str) -> Iterator[list]:
        chunk: list[str] = []
        try:
            with _open_text(path, self.encoding) as fh:
                for line in fh:
                    chunk.append(line[:-1] if line.endswith("\n") else line)
                    if len(chunk) == self.chunk_size:
                        yield chunk
                        chunk = []
        except UnicodeError as exc:
            raise _decode_error(path, self.encoding, exc) from exc
        yield chunk


def _resolve_paths(paths: Any) -> list[Path]:
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    try:
        items = list(paths)
    except TypeError:
        raise TypeError(f"paths must be a file, a glob pattern or a list of them; got {type(paths).__name__}.") from None
    if not items:
        raise ValueError("paths is empty: pass a file, a glob pattern (e.g. 'corpus/*.parquet') or a list of them.")
    files: list[Path] = []
    for item in items:
        if not isinstance(item, (str, os.PathLike)):
            raise TypeError(f"paths must hold file names or glob patterns (str or path-like); got {item!r}.")
        text = os.path.expanduser(os.fspath(item))
        if glob.has_magic(text):
            matched = sorted(p for p in glob.glob(text, recursive=True) if os.path.isfile(p))
            if not matched:
                raise FileNotFoundError(f"The pattern {text!r} matches no file (from {os.getcwd()}).")
            files.extend(Path(p) for p in matched)
        elif os.path.isfile(text):
            files.append(Path(text))
        elif os.path.isdir(text):
            raise IsADirectoryError(f"{text} is a folder; pass a pattern for its files, e.g. '{text}/*.parquet'.")
        else:
            raise FileNotFoundError(f"No such file: {text!r} (from {os.getcwd()}).")
    return files


def _import(name: str, what: str):
    import importlib

    try:
        return importlib.import_module(name)
    except ImportError:
        raise ImportError(
            f"Reading {what} needs {name}: pip install {name} (or pip install \"kdtext[dask]\")."
        ) from None


def _parquet_file(path: Path):
    pq = _import("pyarrow.parquet", "Parquet files")
    try:
        return pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises ArrowInvalid for a file that is not Parquet
        raise ValueError(f"{path} is not a readable Parquet file ({type(exc).__name__}: {exc}).") from exc


def _open_text(path: Path, encoding: str):
    suffix = path.suffix.lower()
    if suffix == ".gz":
        import gzip

        return gzip.open(path, "rt", encoding=encoding)
    if suffix == ".bz2":
        import bz2

        return bz2.open(path, "rt", encoding=encoding)
    if suffix == ".xz":
        import lzma

        return lzma.open(path, "rt", encoding=encoding)
    return open(path, encoding=encoding)


def _missing_column(path: Path, column: str, names: Sequence[str]) -> ValueError:
    shown = list(names)[:20]
    return ValueError(
        f"{path} has no column {column!r}; its columns are {shown}{' ...' if len(names) > 20 else ''}. "
        "Pass text_column=<the column holding the texts>."
    )


def _decode_error(path: Path, encoding: str, exc: UnicodeError) -> ValueError:
    try:
        offset = _first_undecodable_byte(path, encoding)
    except UnicodeError:  # a stream-level failure (e.g. no BOM), not one byte
        offset = None
    where = f" at byte offset {offset}" if offset is not None else ""
    reason = getattr(exc, "reason", None) or str(exc)
    return ValueError(
        f"{path} is not valid {encoding}: cannot decode the bytes{where} ({reason}). Pass the file's "
        "encoding, e.g. TextFiles(..., encoding='cp1251') or 'latin-1', or re-encode the file as UTF-8."
    )


def _first_undecodable_byte(path: Path, encoding: str, block: int = 1 << 20) -> int | None:
    """Offset in the (uncompressed) file of the first byte ``encoding`` rejects; None if all decode."""
    decoder = codecs.getincrementaldecoder(encoding)()
    opener = {".gz": "gzip", ".bz2": "bz2", ".xz": "lzma"}.get(path.suffix.lower())
    import importlib

    fh = importlib.import_module(opener).open(path, "rb") if opener else open(path, "rb")
    offset = 0
    with fh:
        while True:
            data = fh.read(block)
            try:
                decoder.decode(data, final=not data)
            except UnicodeDecodeError as exc:
                # the decoder's buffer holds at most a few bytes of an unfinished character from the last block
                pending = len(exc.object) - len(data)
                return offset - pending + exc.start
            if not data:
                return None
            offset += len(data)


def _check_chunk(chunk: list, path: Path, first_row: int) -> None:
    for i, t in enumerate(chunk):
        if not isinstance(t, str):
            if is_missing(t):
                raise ValueError(
                    f"{path} has a missing text (None/NaN) at data row {first_row + i} (0-based, header not "
                    "counted). Drop or fill such rows in the file first."
                )
            raise TypeError(f"{path} holds a non-string value {t!r} at data row {first_row + i}.")


# --------------------------------------------------------------------------- shards
def shard_id(texts: Sequence[str]) -> str:
    """A shard's id: 32 hex digits hashing its texts in order (their 16-byte cache keys).

    The same texts always give the same id, in any process, so a shard's file
    name says which texts it holds and a resumed job skips exactly the shards
    it wrote before.
    """
    from .distillation import _text_key

    h = hashlib.blake2b(digest_size=16)
    for t in texts:
        h.update(_text_key(t))
    return h.hexdigest()


def iter_shards(texts: Iterable, shard_size: int = DEFAULT_SHARD_SIZE) -> Iterator[tuple[str, list[str]]]:
    """Cut a stream of texts (or of lists of texts, as :meth:`TextFiles.iter_chunks` yields) into shards.

    Yields ``(shard_id(shard), shard)`` for consecutive runs of ``shard_size``
    texts; the last shard may be shorter.
    """
    _check_shard_size(shard_size)
    buf: list[str] = []
    for item in texts:
        if isinstance(item, list):
            buf.extend(item)
        else:
            buf.append(item)
        while len(buf) >= shard_size:
            shard, buf = buf[:shard_size], buf[shard_size:]
            yield shard_id(shard), shard
    if buf:
        yield shard_id(buf), buf


def _check_shard_size(shard_size: Any) -> None:
    if isinstance(shard_size, bool) or not isinstance(shard_size, (int, np.integer)) or shard_size < 1:
        raise ValueError(
            f"shard_size must be a positive int (texts per shard file, e.g. 8192), got {shard_size!r}."
        )


def shard_path(folder: str | os.PathLike, sid: str) -> Path:
    """Where :func:`label_shard` writes the shard ``sid`` inside a cache ``folder``."""
    return Path(folder) / f"{_SHARD_PREFIX}{sid}.npz"


# --------------------------------------------------------------------------- teachers saved in folders
_SAVED_CONFIGS = ("kdtext_config.json", "onnx_config.json")


def load_teacher(path: str | os.PathLike, *, device: str = "auto") -> Any:
    """Load a fitted teacher from a folder written by ``save_pretrained`` or ``export_onnx``.

    The class is read from the folder: ``kdtext_config.json`` names the
    estimator (:class:`~kdtext.TransformerClassifier`,
    :class:`~kdtext.BiLSTMClassifier`, :class:`~kdtext.StaticEmbeddingClassifier`),
    ``onnx_config.json`` marks an :class:`~kdtext.OnnxClassifier` folder.

    Parameters
    ----------
    path : str or path-like
        The folder.
    device : str, default="auto"
        Where a torch teacher goes (its ``from_pretrained(device=...)``);
        ignored for ONNX folders.

    Returns
    -------
    teacher : fitted classifier

    Raises
    ------
    ModelNotFoundError
        If the folder does not exist or holds neither config file.

    Examples
    --------
    >>> from kdtext.labeling import load_teacher
    >>> teacher = load_teacher("teacher/")  # doctest: +SKIP
    """
    import json

    from .exceptions import ModelNotFoundError

    folder = _saved_teacher_folder(path)
    if (folder / "onnx_config.json").is_file():
        from .onnx import OnnxClassifier

        return OnnxClassifier.from_pretrained(folder)
    config = folder / "kdtext_config.json"
    name = json.loads(config.read_text(encoding="utf-8")).get("estimator")
    import kdtext

    cls = getattr(kdtext, name, None) if isinstance(name, str) else None
    if cls is None or not hasattr(cls, "from_pretrained"):
        raise ModelNotFoundError(f"{config} names the estimator {name!r}, which kdtext cannot load.")
    return cls.from_pretrained(folder, device=device)


def _saved_teacher_folder(path: str | os.PathLike) -> Path:
    """``path`` as a folder holding a saved teacher's config, or a ModelNotFoundError saying what is missing."""
    folder = Path(os.path.expanduser(os.fspath(path)))
    if not any((folder / n).is_file() for n in _SAVED_CONFIGS):
        from .exceptions import ModelNotFoundError

        what = "does not exist" if not folder.exists() else f"holds neither {' nor '.join(_SAVED_CONFIGS)}"
        raise ModelNotFoundError(
            f"The teacher folder {os.fspath(path)!r} {what}. Pass a folder written by a fitted teacher's "
            "save_pretrained (or export_onnx), or the fitted teacher itself."
        )
    return folder


@dataclass(frozen=True)
class _TeacherFolder:
    """A teacher named by its folder: each process (a Dask worker) loads it once, on its own device."""

    path: str

    def load(self) -> Any:
        stamp = tuple(os.stat(Path(self.path) / n).st_mtime_ns if (Path(self.path) / n).exists() else 0
                      for n in _SAVED_CONFIGS)  # a teacher saved again into the folder is loaded again
        key = (os.path.abspath(self.path), stamp)
        with _LOADING:  # the threads of one worker share one copy
            if key not in _LOADED_TEACHERS:
                _LOADED_TEACHERS.clear()  # one teacher per process
                _LOADED_TEACHERS[key] = load_teacher(self.path)
                logger.info("loaded the teacher from %s in process %d", self.path, os.getpid())
            return _LOADED_TEACHERS[key]


_LOADED_TEACHERS: dict = {}
_LOADING = threading.Lock()
_SHIPPED_TEACHERS: dict = {}  # token -> teacher, filled on a Dask worker by kdtext._dask_teacher.TeacherPlugin


@dataclass(frozen=True)
class _ShippedTeacher:
    """A fitted teacher sent to every Dask worker once, as a worker plugin, named in tasks by a token."""

    token: str

    def load(self) -> Any:
        with _LOADING:
            teacher = _SHIPPED_TEACHERS.get(self.token)
        if teacher is None:
            raise RuntimeError(
                f"The teacher of this label_texts job ({self.token}) is not on this Dask worker (pid "
                f"{os.getpid()}): its worker plugin was not set up here or was removed. Check the worker's log."
            )
        return teacher


def _folder_fingerprint(ref: _TeacherFolder) -> str:
    from .distillation import teacher_fingerprint

    return teacher_fingerprint(ref.load())


def label_shard(teacher: Any, texts: Sequence[str], folder: str | os.PathLike, sid: str) -> int:
    """Label one shard with the teacher and write it atomically; the unit of work of every engine.

    Writes ``folder/shard-<sid>.npz`` in the teacher cache's format (the
    16-byte keys of the shard's distinct texts and their float32 logits) via a
    temporary file and ``os.replace``, so a reader never sees half a file and
    a killed worker leaves at most a stray ``.tmp``. Does nothing if the file
    exists. Two workers writing the same shard write the same content.

    Parameters
    ----------
    teacher : fitted classifier
    texts : sequence of str
        The shard's texts.
    folder : path-like
        ``<out>/kdtext_teacher_cache/<teacher fingerprint>``.
    sid : str
        The shard id (:func:`shard_id` of ``texts``).

    Returns
    -------
    n_labeled : int
        Distinct texts the teacher labeled: 0 when the shard existed.

    Examples
    --------
    >>> from kdtext.labeling import label_shard, shard_id
    >>> n = label_shard(teacher, texts, folder, shard_id(texts))  # doctest: +SKIP
    """
    from .distillation import _check_finite_outputs, _TeacherCache, _text_key, teacher_logits

    path = shard_path(folder, sid)
    if path.exists():
        return 0
    if isinstance(teacher, (_TeacherFolder, _ShippedTeacher)):  # loaded (or received) here once, then kept
        teacher = teacher.load()
    position: dict[str, int] = {}
    for t in texts:
        position.setdefault(t, len(position))
    distinct = list(position)
    with np.errstate(over="ignore", invalid="ignore"):
        logits = teacher_logits(teacher, distinct)
    n_classes = len(getattr(teacher, "classes_", ()))
    if logits.ndim != 2 or len(logits) != len(distinct) or (n_classes and logits.shape[1] != n_classes):
        raise ValueError(
            f"The teacher {type(teacher).__name__} returned outputs of shape {logits.shape} for "
            f"{len(distinct)} texts and {n_classes} classes."
        )
    _check_finite_outputs(teacher, logits, distinct)
    folder = Path(folder)  # <out>/kdtext_teacher_cache/<fingerprint>
    cache = _TeacherCache(folder.parent.parent, folder.name)
    cache.store([_text_key(t) for t in distinct], logits, name=path.stem)
    return len(distinct)


# --------------------------------------------------------------------------- driver
@dataclass(frozen=True)
class LabelingResult:
    """What :func:`label_texts` did.

    Attributes
    ----------
    folder : str
        The shard folder, ``<out>/kdtext_teacher_cache/<fingerprint>``.
    fingerprint : str
        The teacher's fingerprint (:func:`kdtext.distillation.teacher_fingerprint`).
    n_shards : int
        Shards in the corpus.
    n_labeled_shards : int
        Shards labeled by this call.
    n_skipped_shards : int
        Shards found already written (a resumed or repeated job).
    n_texts : int
        Texts read (duplicates included).
    n_labeled_texts : int
        Distinct texts (per shard) the teacher labeled in this call.
    n_workers : int
        Workers that labeled: 1 in process, the cluster's workers with Dask.
    seconds : float
        Wall time of the call.
    """

    folder: str
    fingerprint: str
    n_shards: int
    n_labeled_shards: int
    n_skipped_shards: int
    n_texts: int
    n_labeled_texts: int
    n_workers: int
    seconds: float

    @property
    def texts_per_second(self) -> float:
        """Texts read per second of wall time (labeled or skipped)."""
        return self.n_texts / self.seconds if self.seconds > 0 else float("nan")


def label_texts(
    teacher: Any,
    texts: Any,
    *,
    out: str | os.PathLike,
    text_column: str = "text",
    shard_size: int = DEFAULT_SHARD_SIZE,
    client: Any = None,
    verbose: int = 0,
) -> LabelingResult:
    """Soft-label a corpus with a fitted teacher, in shards, resumably; optionally on a Dask cluster.

    The teacher's logits go into ``out`` in the teacher cache format of
    :class:`~kdtext.DistillationClassifier`: one ``.npz`` per shard (16-byte
    blake2b keys of its distinct texts, float32 logits) in
    ``out/kdtext_teacher_cache/<teacher fingerprint>/``. Afterwards
    ``DistillationClassifier(teacher, student, memory=out).fit(texts)`` finds
    every label there (``n_teacher_calls_ == 0``).

    Each shard is labeled by :func:`label_shard` and written atomically under a
    name hashing its texts, so a killed job run again labels only the shards
    it had not written, and a finished shard is never labeled twice. The
    corpus is read in order by this process (a resumed job reads it again,
    which is fast next to the teacher) and never held in memory at once.

    Parameters
    ----------
    teacher : fitted classifier, or str or path-like
        Anything :class:`~kdtext.DistillationClassifier` accepts: a fitted
        :class:`~kdtext.TransformerClassifier`, any classifier with
        ``predict_logits``, ``predict_proba`` or ``decision_function``. Or the
        folder a fitted teacher was saved to (``save_pretrained`` or
        ``export_onnx``; see :func:`load_teacher`): with a ``client`` every
        worker then loads the teacher itself, once, on its own device, so
        this process needs neither the model in memory nor a GPU and nothing
        is sent over the network but the path (the folder must be readable
        on every worker). The fingerprint is computed on a worker.
    texts : TextFiles, str, path-like, or list of str
        The corpus. A str or path-like (a file or a glob pattern, e.g.
        ``"corpus/*.parquet"``) or a list of :class:`pathlib.Path` is read as
        ``TextFiles(texts, text_column=text_column)``; any other iterable is
        taken as the texts themselves (a list of file names as str is a list
        of texts: wrap it in :class:`TextFiles`).
    out : str or path-like
        Folder for the labels (created). Pass the same folder as
        ``DistillationClassifier(memory=out)``.
    text_column : str, default="text"
        The text column when ``texts`` names files.
    shard_size : int, default=8192
        Texts per shard: the unit of work, of resumption and of the files
        written. Larger shards mean fewer files and less scheduling; smaller
        ones lose less work to a crash. 8,192 texts take about 30 s for a
        MiniLM teacher on 2 CPU cores; on GPU workers use 50,000-100,000.
    client : None or dask.distributed.Client, default=None
        Where to label. None: in this process, shard after shard, the teacher
        using the process's own parallelism (torch's threads on a CPU, the GPU
        on a GPU teacher): one worker, which is right for a GPU; for several
        processes on one machine pass a client of a ``LocalCluster`` (rates in
        ``docs/scaling.rst``). A ``dask.distributed.Client``: the
        teacher is sent once to every worker (as a worker plugin, which a
        worker joining later also gets; not pickled with each task, and the
        scheduler holds its pickle until the call ends), shards are submitted
        as tasks (at most two per worker thread in flight), and each worker
        writes its shard files itself, so ``out`` must be a folder every
        worker can write (a shared filesystem on a real cluster). Dask is
        imported only here.
    verbose : int, default=0
        A progress bar over shards.

    Returns
    -------
    result : LabelingResult
        Counts (shards total / labeled now / skipped, texts), the teacher's
        fingerprint and the shard folder.

    Raises
    ------
    NotFittedError
        If the teacher is not fitted (:class:`~kdtext.exceptions.NotFittedTeacherError`).
    ValueError
        For a bad ``out`` or ``shard_size``, and for missing texts or teacher
        outputs that are not finite.

    Notes
    -----
    Other engines call :func:`label_shard` the same way: on Ray Data,
    ``ds.map_batches(Labeler, concurrency=n, num_cpus=...)`` with a callable
    class that loads the teacher once in ``__init__`` and calls
    ``label_shard`` per batch (on 2 CPUs the actors need ``num_cpus=0.5`` or
    the pipeline deadlocks); on Spark, ``mapPartitions`` (or
    ``predict_batch_udf``, whose ``make_predict_fn`` loads the teacher once
    per executor). See ``docs/scaling.rst``.

    Examples
    --------
    >>> from sklearn.feature_extraction.text import TfidfVectorizer
    >>> from sklearn.linear_model import LogisticRegression
    >>> from sklearn.pipeline import make_pipeline
    >>> from kdtext import DistillationClassifier, label_texts
    >>> X = ["good film", "bad film", "great plot", "awful plot"] * 5
    >>> teacher = make_pipeline(TfidfVectorizer(), LogisticRegression()).fit(X, [1, 0, 1, 0] * 5)
    >>> import tempfile; out = tempfile.mkdtemp()
    >>> corpus = ["good plot", "bad acting", "great film", "awful acting"]
    >>> result = label_texts(teacher, corpus, out=out, shard_size=2)
    >>> result.n_shards, result.n_labeled_shards
    (2, 2)
    >>> label_texts(teacher, corpus, out=out, shard_size=2).n_skipped_shards   # nothing to do again
    2
    >>> student = make_pipeline(TfidfVectorizer(), LogisticRegression())
    >>> DistillationClassifier(teacher, student, memory=out).fit(corpus).n_teacher_calls_
    0

    A corpus of files, on a Dask cluster:

    >>> from dask.distributed import Client  # doctest: +SKIP
    >>> label_texts(teacher, "corpus/*.parquet", out="labels/", client=Client("tcp://scheduler:8786"))  # doctest: +SKIP
    """
    from .distillation import DistillationClassifier, teacher_fingerprint

    t0 = time.perf_counter()
    _check_shard_size(shard_size)
    if isinstance(teacher, (str, os.PathLike)):
        # in this process: loaded here, for this call only; on Dask: each worker loads (and keeps) its own copy
        folder_ = _saved_teacher_folder(teacher)
        teacher = load_teacher(folder_) if client is None else _TeacherFolder(str(folder_))
    by_folder = isinstance(teacher, _TeacherFolder)
    if not by_folder:
        # the distiller's own check: a classifier with soft outputs, fitted (NotFittedTeacherError with a hint)
        DistillationClassifier._check_teacher(SimpleNamespace(teacher=teacher))
    corpus = _as_corpus(texts, text_column)
    folder = _check_out(out)
    if by_folder:  # on a worker, which also loads its copy there
        _check_client(client)
        fingerprint = client.submit(_folder_fingerprint, teacher, pure=False).result()
    else:
        fingerprint = teacher_fingerprint(teacher)
    folder = folder / "kdtext_teacher_cache" / fingerprint
    folder.mkdir(parents=True, exist_ok=True)
    if client is None:
        counts = _label_in_process(teacher, corpus, folder, int(shard_size), verbose)
    else:
        counts = _label_on_dask(client, teacher, corpus, folder, int(shard_size), verbose)
    result = LabelingResult(folder=str(folder), fingerprint=fingerprint, **counts, seconds=time.perf_counter() - t0)
    logger.info("label_texts: %d shards (%d labeled, %d skipped), %d texts in %.1fs", result.n_shards,
                result.n_labeled_shards, result.n_skipped_shards, result.n_texts, result.seconds)
    return result


def _as_corpus(texts: Any, text_column: str) -> Iterable:
    if isinstance(texts, TextFiles):
        if text_column != "text" and text_column != texts.text_column:
            raise ValueError(
                f"text_column={text_column!r} but the TextFiles reads column {texts.text_column!r}; set the column "
                "in TextFiles(..., text_column=...) only."
            )
        return texts.iter_chunks()
    if isinstance(texts, (str, os.PathLike)) or (
        isinstance(texts, (list, tuple)) and texts and all(isinstance(p, os.PathLike) for p in texts)
    ):
        return TextFiles(texts, text_column=text_column).iter_chunks()
    if isinstance(texts, bytes):
        raise TypeError("texts must be texts or file names, not bytes; decode them first.")
    from .base import check_texts

    try:
        iter(texts)
    except TypeError:
        raise TypeError(
            f"texts must be a TextFiles, a file or glob pattern, or a list of str; got {type(texts).__name__}."
        ) from None
    return _checked_list_chunks(texts, check_texts)


def _checked_list_chunks(texts: Iterable, check_texts, size: int = 65536) -> Iterator[list[str]]:
    """An in-memory corpus checked chunk by chunk with kdtext's text rules (no copy of the whole list)."""
    buf: list = []
    start = 0
    for t in texts:
        buf.append(t)
        if len(buf) == size:
            yield _check_list_chunk(buf, start, check_texts)
            start, buf = start + size, []
    if buf or start == 0:
        yield _check_list_chunk(buf, start, check_texts)


def _check_list_chunk(buf: list, start: int, check_texts) -> list[str]:
    try:
        return check_texts(buf, name="texts", allow_empty=start > 0)
    except (TypeError, ValueError) as exc:
        if start:
            raise type(exc)(f"{exc} (position counted within the chunk starting at text {start})") from exc
        raise


def _check_out(out: Any) -> Path:
    if out is None or not isinstance(out, (str, os.PathLike)) or not os.fspath(out):
        raise TypeError(
            f"out must be a folder (str or path-like) for the labels, got {out!r}. Pass e.g. out='labels/', "
            "then DistillationClassifier(..., memory='labels/')."
        )
    path = Path(os.path.expanduser(os.fspath(out)))
    if path.exists() and not path.is_dir():
        raise NotADirectoryError(f"out={os.fspath(out)!r} is a file; pass a folder (it is created if missing).")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OSError(f"Cannot create the labels folder out={os.fspath(out)!r}: {exc}") from exc
    if not os.access(path, os.W_OK):
        raise PermissionError(f"The labels folder {path} is not writable.")
    return path


def _progress(verbose: int):
    if not verbose:
        return None
    from tqdm.auto import tqdm

    return tqdm(desc="label_texts", unit="shard", leave=False)


def _label_in_process(teacher, chunks, folder: Path, shard_size: int, verbose: int) -> dict:
    counts = dict(n_shards=0, n_labeled_shards=0, n_skipped_shards=0, n_texts=0, n_labeled_texts=0, n_workers=1)
    pbar = _progress(verbose)
    for sid, shard in iter_shards(chunks, shard_size):
        n = label_shard(teacher, shard, folder, sid)
        _count(counts, len(shard), n)
        if pbar is not None:
            pbar.update(1)
    if pbar is not None:
        pbar.close()
    return counts


def _count(counts: dict, n_texts: int, n_labeled: int) -> None:
    counts["n_shards"] += 1
    counts["n_texts"] += n_texts
    if n_labeled:
        counts["n_labeled_shards"] += 1
        counts["n_labeled_texts"] += n_labeled
    else:
        counts["n_skipped_shards"] += 1


def _label_on_dask(client, teacher, chunks, folder: Path, shard_size: int, verbose: int) -> dict:
    """The Dask adapter: one teacher per worker, shards as tasks, bounded in flight."""
    try:
        from distributed import as_completed
    except ImportError:  # pragma: no cover - a client was given, so distributed is there
        raise ImportError('client= needs dask.distributed: pip install "kdtext[dask]".') from None
    _check_client(client)
    nthreads = client.nthreads()  # {worker address: threads}
    if not nthreads:
        raise RuntimeError("The Dask cluster has no workers; start some (or wait for them) before label_texts.")
    counts = dict(n_shards=0, n_labeled_shards=0, n_skipped_shards=0, n_texts=0, n_labeled_texts=0,
                  n_workers=len(nthreads))
    # One copy per worker: an in-memory teacher goes as a worker plugin (kdtext._dask_teacher says why not scatter),
    # a teacher folder is loaded by each worker on the first shard it gets.
    plugin_name = None
    if isinstance(teacher, _TeacherFolder):
        teacher_ref: Any = teacher
    else:
        from ._dask_teacher import TeacherPlugin

        token = uuid.uuid4().hex
        plugin_name = f"kdtext-teacher-{token}"
        client.register_plugin(TeacherPlugin(teacher, token), name=plugin_name)
        teacher_ref = _ShippedTeacher(token)
    max_in_flight = 2 * sum(nthreads.values())
    pending = as_completed()
    sizes: dict = {}  # future key -> texts in its shard; also the futures still outstanding
    pbar = _progress(verbose)

    def collect(future):
        n = future.result()  # a task's error (e.g. NaN logits) is raised here
        _count(counts, sizes.pop(future.key), n)
        if pbar is not None:
            pbar.update(1)

    try:
        for sid, shard in iter_shards(chunks, shard_size):
            if shard_path(folder, sid).exists():  # skipped without a task (the worker checks again)
                _count(counts, len(shard), 0)
                if pbar is not None:
                    pbar.update(1)
                continue
            future = client.submit(label_shard, teacher_ref, shard, str(folder), sid, pure=False)
            sizes[future.key] = len(shard)
            pending.add(future)
            while pending.count() >= max_in_flight:
                collect(next(pending))
        for future in pending:
            collect(future)
    except BaseException:
        client.cancel([f for f in pending.futures])
        raise
    finally:
        if pbar is not None:
            pbar.close()
        if plugin_name is not None:
            client.unregister_worker_plugin(plugin_name)  # each worker drops its copy
    return counts


def _check_client(client: Any) -> None:
    if not hasattr(client, "scatter") or not hasattr(client, "submit"):
        raise TypeError(f"client must be a dask.distributed.Client or None, got {type(client).__name__}.")
