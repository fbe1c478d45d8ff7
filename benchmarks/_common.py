"""Small helpers shared by kdtext's benchmark scripts.

Every benchmark in this folder is a standalone script (``python
benchmarks/<name>.py``). They share only what is here:

- :func:`add_common_args` / :func:`data_dir`: the ``--data`` and ``--out``
  options; data defaults to ``<project root>/../shared/data`` (the real data
  sets described in that folder's README), never copied into the repo.
- :func:`machine_info`: date, platform, CPU count, load average, torch
  version and threads, stored with every result.
- :func:`measure_matmul_gflops`: the machine's measured fp32 matmul rate, the
  reference for "FLOP utilisation" figures.
- :func:`wait_for_idle_cpu` / :func:`cpu_busy_fraction`: on a shared machine,
  wait until other jobs leave the CPUs idle before a timed section.
- :func:`print_table` and :func:`write_json`: a plain-text table on stdout and
  the JSON result file (``benchmarks/results/<name>.json`` by default).

Keep it small: nothing here imports kdtext, and torch is imported lazily.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import re
import sys
import time
from pathlib import Path
from typing import Any, Sequence

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"
# <project root>/../shared/data, i.e. the sibling "shared" folder of the repo
DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def add_common_args(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser:
    """Add ``--data`` (data root) and ``--out`` (JSON file) to ``parser``.

    ``name`` is the benchmark's name; the JSON goes to
    ``benchmarks/results/<name>.json`` unless ``--out`` says otherwise.
    """
    parser.add_argument(
        "--data",
        type=Path,
        default=None,
        help=f"folder holding sst2/, ru_toxic/, imdb/ (default: $KDTEXT_DATA or {DEFAULT_DATA})",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=RESULTS_DIR / f"{name}.json",
        help="where to write the JSON result (default: %(default)s)",
    )
    return parser


def data_dir(override: str | os.PathLike | None = None, subset: str | None = None) -> Path:
    """The data root (or ``root/subset``), failing with a clear message if absent.

    Order: ``override`` (the ``--data`` option), ``$KDTEXT_DATA``, then
    ``<project root>/../shared/data``.
    """
    root = Path(override or os.environ.get("KDTEXT_DATA") or DEFAULT_DATA).expanduser()
    path = root / subset if subset else root
    if not path.is_dir():
        sys.exit(f"data folder {path} not found; pass --data <folder holding sst2/, ru_toxic/, imdb/>")
    return path


def machine_info() -> dict[str, Any]:
    """Date and machine facts stored with every result."""
    info: dict[str, Any] = {
        "date": _dt.datetime.now(_dt.timezone.utc).astimezone().isoformat(timespec="seconds"),
        "platform": platform.platform(),
        "processor": _cpu_model(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
    }
    if hasattr(os, "getloadavg"):
        # other jobs on the machine skew timings; the 1-minute load shows it
        info["load_avg_1m"] = round(os.getloadavg()[0], 2)
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
    except ImportError:  # pragma: no cover
        pass
    try:
        import transformers

        info["transformers"] = transformers.__version__
    except ImportError:  # pragma: no cover
        pass
    return info


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def measure_matmul_gflops(
    shapes: Sequence[tuple[int, int, int]] = ((1024, 1024, 1024), (4096, 384, 1536), (4096, 1536, 384)),
    repeats: int = 5,
    min_time: float = 0.2,
) -> dict[str, float]:
    """Measured fp32 ``torch.matmul`` rate in GFLOP/s, with torch's current threads.

    For each ``(m, k, n)`` shape, times ``(m x k) @ (k x n)`` (``2*m*k*n``
    FLOPs) in loops of at least ``min_time`` seconds, ``repeats`` times, and
    keeps the best loop. The defaults are a square 1024 matmul and the two
    feed-forward matmuls of a hidden-384 BERT (MiniLM) on 4,096 tokens.

    Returns a dict ``{"m x k x n": GFLOP/s, ..., "best": max}``; use
    ``"best"`` as the machine's attainable fp32 rate.
    """
    import torch

    out: dict[str, float] = {}
    with torch.inference_mode():
        for m, k, n in shapes:
            a = torch.randn(m, k)
            b = torch.randn(k, n)
            flops = 2.0 * m * k * n
            torch.matmul(a, b)  # warm-up
            # loop count so one timed loop lasts at least min_time
            t0 = time.perf_counter()
            torch.matmul(a, b)
            once = max(time.perf_counter() - t0, 1e-6)
            loops = max(1, int(min_time / once))
            best = float("inf")
            for _ in range(repeats):
                t0 = time.perf_counter()
                for _ in range(loops):
                    torch.matmul(a, b)
                best = min(best, (time.perf_counter() - t0) / loops)
            out[f"{m}x{k}x{n}"] = flops / best / 1e9
    out["best"] = max(out.values())
    return out


def cpu_busy_fraction(interval: float = 1.0) -> float | None:
    """Share of all CPUs busy (any process) over the next ``interval`` seconds, from /proc/stat.

    None where /proc/stat is missing (not Linux).
    """

    def read():
        with open("/proc/stat", encoding="utf-8") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        idle = v[3] + (v[4] if len(v) > 4 else 0)  # idle + iowait
        return sum(v), idle

    try:
        t0, i0 = read()
        time.sleep(interval)
        t1, i1 = read()
    except OSError:
        return None
    return 1.0 - (i1 - i0) / max(t1 - t0, 1)


def wait_for_idle_cpu(max_busy: float = 0.15, timeout: float = 300.0, interval: float = 1.0) -> float | None:
    """Wait (at most ``timeout`` s) until other processes use under ``max_busy`` of the CPUs.

    Call it right before a timed section, while this process is idle: on a
    shared machine it keeps other jobs' bursts out of the timings. Returns the
    last busy fraction seen (printing a note if the timeout was hit).
    """
    deadline = time.monotonic() + timeout
    busy = cpu_busy_fraction(interval)
    while busy is not None and busy > max_busy and time.monotonic() < deadline:
        busy = cpu_busy_fraction(interval)
    if busy is not None and busy > max_busy:
        print(f"note: CPUs still {100 * busy:.0f}% busy with other work after {timeout:.0f}s; timing anyway", flush=True)
    return busy


def print_table(rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None, floatfmt: str = "{:.2f}") -> str:
    """Print ``rows`` (dicts) as a Markdown table and return its text.

    Floats use ``floatfmt``; ``None`` prints as an empty cell.
    """
    columns = list(columns or rows[0].keys())

    def fmt(v: Any) -> str:
        if v is None:
            return ""
        if isinstance(v, float):
            return floatfmt.format(v)
        return str(v)

    cells = [[fmt(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    lines = [
        "| " + " | ".join(c.ljust(w) for c, w in zip(columns, widths)) + " |",
        "|" + "|".join("-" * (w + 2) for w in widths) + "|",
    ]
    lines += ["| " + " | ".join(v.ljust(w) for v, w in zip(row, widths)) + " |" for row in cells]
    text = "\n".join(lines)
    print(text, flush=True)
    return text


_CHECKOUT_FILE = re.compile(r"(?:/[^/\s\"':]+)+?/((?:benchmarks|kdtext|tests|examples|docs)/)")
_SHARED = re.compile(r"(?:/[^/\s\"':]+)+?/shared/data\b")


def portable(value: Any) -> Any:
    """``value`` (a JSON-like tree) with this machine's absolute paths made portable.

    A path into a checkout (``.../benchmarks/...``, ``.../kdtext/...``) becomes
    relative to it, the data folder becomes ``../shared/data`` and the temporary
    folder ``$TMPDIR``: the result files are project files, and no path of the
    machine that ran them belongs there.
    """
    import tempfile

    if isinstance(value, dict):
        return {k: portable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [portable(v) for v in value]
    if not isinstance(value, str) or "/" not in value:
        return value
    value = _SHARED.sub("../shared/data", value)
    value = _CHECKOUT_FILE.sub(r"\1", value)
    tmp = tempfile.gettempdir().rstrip("/")
    return re.sub(rf"(?<![\w.]){re.escape(tmp)}(?=/|\b)", "$TMPDIR", value) if tmp else value


def write_json(path: str | os.PathLike, result: dict[str, Any], *, command: str | None = None) -> Path:
    """Write ``result`` with ``machine`` info and the ``command`` line to ``path`` (folders created).

    Paths are made :func:`portable` first.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = portable({
        "command": command if command is not None else "python " + " ".join(sys.argv),
        "machine": machine_info(),
        **result,
    })
    path.write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {path}", flush=True)
    return path
