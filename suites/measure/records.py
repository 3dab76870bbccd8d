"""One row per cell, and how rows are stored: ``results.jsonl`` (lossless), ``results.csv``, ``env.json``.

Storage rules:

* ``results.jsonl`` holds one JSON object per cell, raw samples in ``samples_ms``; a cell whose
  timing was not measured has ``samples_ms: []`` and null timings.  During a run each finished
  cell is *appended* as one line (one ``write``, flushed and fsynced), so an interruption loses
  no finished cell; a torn last line is ignored on reading.  At the end (and on Ctrl-C) the file
  is rewritten whole, with the derived columns filled in, atomically (temp file + ``os.replace``).
* ``results.csv`` has the same rows without the samples, rewritten atomically.
* ``env.json`` is written atomically.

The identity of a cell (used by ``--resume`` and ``convbench compare``) is :func:`cell_key`.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import tempfile
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Iterable

from ..plan.cells import KEY_FIELDS, make_key

STATUSES = ("ok", "fail", "error", "skipped")
#: readable shape columns copied into the CSV from the geometry (blank where absent)
GEOMETRY_COLUMNS = ("n", "c", "h", "w", "k", "r", "s", "stride", "padding", "dilation", "groups", "kernel")


@dataclass
class Record:
    # identity
    suite: str
    op: str
    algorithm: str
    backend: str
    shape: str
    dtype: str
    layout: str
    label: str = ""
    #: what a conv2d cell computes: fwd, dgrad, wgrad or fwd+bwd (convbench.suites.plan.shapes.MODES)
    mode: str = "fwd"
    #: how often the layer occurs in its network (network suites' layer cells; 1 elsewhere)
    count: int = 1
    #: {"type": "ConvGeometry", "n": ..., ...} (tuples as lists)
    geometry: dict = field(default_factory=dict)
    device: str = ""
    # outcome: ok (checked and timed or deliberately untimed) | fail (wrong result) |
    # error (raised) | skipped (does not apply here)
    status: str = "ok"
    message: str = ""
    # correctness against float64
    max_rel_err: float | None = None
    rms_rel_err: float | None = None
    tolerance: float | None = None
    passed: bool | None = None
    checked_images: int | None = None
    # timing
    timed: bool = False
    timing_note: str = ""
    timer: str = ""
    p50_ms: float | None = None
    p20_ms: float | None = None
    p80_ms: float | None = None
    mean_ms: float | None = None
    cv: float | None = None
    noise: float | None = None
    n_samples: int = 0
    #: timing rounds the samples come from (see convbench.suites.measure.runner.run); 0 when not timed
    rounds: int = 0
    stop_reason: str = ""
    compile_ms: float | None = None
    # the launch config (Triton conv2d cells): its name, where it came from ("heuristic",
    # "tuned", "given", "not tuned: no GPU") and the seconds tuning took (apart from the samples)
    config: str = ""
    config_from: str = ""
    tuning_s: float | None = None
    # kernel-only timing (Triton conv2d): the plan's one-time work (checks, allocation, weight
    # layout, filter transforms), the kernel launches per timed call, and the median of the whole
    # public call ("end to end") next to the kernel-only samples
    setup_ms: float | None = None
    launches: int | None = None
    e2e_p50_ms: float | None = None
    #: the torch flags the cell ran with (cudnn.benchmark, TF32 switches), after its own setup
    flags: dict = field(default_factory=dict)
    # work and derived throughput
    flops: int = 0
    multiplies: int | None = None
    min_bytes: int = 0
    workspace_bytes: int | None = None
    tflops: float | None = None
    gbps: float | None = None
    roofline_pct: float | None = None
    # against the vendor baseline
    baseline: str = ""
    speedup: float | None = None
    speedup_lo: float | None = None
    speedup_hi: float | None = None
    #: the rounds the run asked for (``rounds`` < this: interrupted and not resumed)
    rounds_requested: int = 0
    #: samples per round: ``samples_ms`` is their concatenation, in round order
    round_samples: list = field(default_factory=list)
    #: the OS process id that took each round (rounds from different processes or run invocations)
    round_pids: list = field(default_factory=list)
    #: CPU: the speed probe's median time (ms) around each round's samples (convbench.suites.measure.timing)
    round_probe_ms: list = field(default_factory=list)
    samples_ms: list = field(default_factory=list)

    @property
    def key(self) -> str:
        return cell_key(self)

    def to_dict(self) -> dict:
        return _clean(asdict(self))

    @classmethod
    def from_dict(cls, d: dict) -> "Record":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def short_of_rounds(records) -> list[str]:
    """Keys of the timed cells with fewer rounds than their run asked for (an interrupted run
    that was not resumed: their statistics are thinner than the rest)."""
    get = lambda r, n: r.get(n) if isinstance(r, dict) else getattr(r, n, None)  # noqa: E731
    return [cell_key(r) for r in records
            if get(r, "timed") and (get(r, "rounds_requested") or 0) > (get(r, "rounds") or 0)]


def cell_key(record) -> str:
    """``suite|op|algorithm|backend|shape|dtype|layout`` for a :class:`Record` or a dict."""
    get = record.get if isinstance(record, dict) else (lambda name: getattr(record, name))
    return make_key(*(get(name) for name in KEY_FIELDS))


def _clean(value):
    """JSON-safe: NaN/inf become None, tuples lists."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


# --------------------------------------------------------------------------------------------
# files
# --------------------------------------------------------------------------------------------
def atomic_write_text(path: Path | str, text: str) -> None:
    """Write ``text`` to a temp file in the same folder, fsync it, then ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def to_jsonl(records: Iterable[Record]) -> str:
    return "".join(json.dumps(r.to_dict(), separators=(",", ":")) + "\n" for r in records)


def read_jsonl(path: Path | str) -> list[Record]:
    """Records of a results.jsonl; a torn (interrupted) last line is skipped."""
    path = Path(path)
    if not path.exists():
        return []
    records = []
    lines = path.read_text(encoding="utf-8").splitlines()
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            records.append(Record.from_dict(json.loads(line)))
        except json.JSONDecodeError:
            if i == len(lines) - 1:
                break  # the write of the last cell was interrupted
            raise ValueError(f"{path}: line {i + 1} is not valid JSON") from None
    return records


def csv_columns() -> list[str]:
    names = [f.name for f in fields(Record)
             if f.name not in ("samples_ms", "round_samples", "round_probe_ms", "round_pids", "geometry", "flags")]
    return names + list(GEOMETRY_COLUMNS) + ["geometry"]


def _csv_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        return "x".join(str(v) for v in value)
    if isinstance(value, float):
        return repr(value)
    return str(value)


def to_csv(records: Iterable[Record]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    cols = csv_columns()
    writer.writerow(cols)
    for r in records:
        d = r.to_dict()
        geom = d.get("geometry") or {}
        row = []
        for col in cols:
            if col == "geometry":
                row.append(json.dumps(geom, separators=(",", ":")))
            elif col in GEOMETRY_COLUMNS and col not in d:
                row.append(_csv_cell(geom.get(col)))
            else:
                row.append(_csv_cell(d.get(col)))
        writer.writerow(row)
    return buf.getvalue()


def _parse(value: str, kind: str):
    if value == "":
        return None
    if kind == "bool":
        return value == "True"
    if kind == "int":
        return int(value)
    if kind == "float":
        return float(value)
    return value


def _field_kinds() -> dict[str, str]:
    kinds = {}
    for f in fields(Record):
        t = str(f.type)
        kinds[f.name] = "bool" if t.startswith("bool") else "int" if t.startswith("int") else \
            "float" if t.startswith("float") else "str"
    return kinds


def read_csv(path: Path | str) -> list[Record]:
    """Records of a results.csv (without samples: those live in results.jsonl)."""
    kinds = _field_kinds()
    out = []
    with Path(path).open(newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            d = {name: _parse(row[name], kinds[name]) for name in kinds if name in row and name != "geometry"}
            for name in ("label", "message", "timing_note", "timer", "stop_reason", "baseline", "device", "config",
                         "config_from"):
                d[name] = d.get(name) or ""
            d["n_samples"] = d.get("n_samples") or 0
            d["flops"] = d.get("flops") or 0
            d["min_bytes"] = d.get("min_bytes") or 0
            d["geometry"] = json.loads(row["geometry"]) if row.get("geometry") else {}
            out.append(Record.from_dict(d))
    return out


class ResultStore:
    """The files of one output folder."""

    def __init__(self, out_dir: Path | str):
        self.dir = Path(out_dir)
        self.jsonl = self.dir / "results.jsonl"
        self.csv = self.dir / "results.csv"
        self.env = self.dir / "env.json"

    def load(self) -> list[Record]:
        return read_jsonl(self.jsonl)

    def start(self, records: list[Record]) -> None:
        """Begin a run: rewrite results.jsonl with ``records`` (empty, or the resumed cells)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.jsonl, to_jsonl(records))

    def append(self, record: Record) -> None:
        """Add one finished cell: one write of one line, flushed and fsynced."""
        line = json.dumps(record.to_dict(), separators=(",", ":")) + "\n"
        with self.jsonl.open("a", encoding="utf-8") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())

    def rewrite(self, records: list[Record]) -> None:
        """The final, complete files (derived columns filled in), each replaced atomically."""
        atomic_write_text(self.jsonl, to_jsonl(records))
        atomic_write_text(self.csv, to_csv(records))

    def write_env(self, env: dict) -> None:
        atomic_write_text(self.env, json.dumps(_clean(env), indent=2, sort_keys=True) + "\n")

    def read_env(self) -> dict:
        return json.loads(self.env.read_text()) if self.env.exists() else {}


def load_run(out_dir: Path | str) -> tuple[list[Record], dict]:
    """Records and environment of a results folder (``ValueError`` if it holds no results)."""
    store = ResultStore(out_dir)
    if not store.jsonl.exists():
        raise ValueError(f"{out_dir} has no results.jsonl (run `convbench run --out {out_dir}` first)")
    return store.load(), store.read_env()


def load_records(path) -> list:
    """Records of a run directory (its ``results.jsonl``) or of a ``.jsonl`` file."""
    p = Path(path)
    if p.is_dir():
        p = p / "results.jsonl"
    if not p.exists():
        raise ValueError(f"no results at {path} (expected a run directory or a results.jsonl)")
    return read_jsonl(p)
