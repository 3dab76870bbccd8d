"""Results as pandas: ``convbench.load`` / ``load_many`` on a real tiny run, and the README's
two lines of analysis on it."""

from dataclasses import fields

import pandas as pd
import pytest

import convbench
from convbench import cli
from convbench.suites.measure.records import Record, read_jsonl

FAST = ["--min-samples", "3", "--max-time", "0.02", "--threads", "1", "--no-peaks", "--rounds", "2",
        "--processes", "1", "--no-report", "--no-history", "-q"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("frame") / "run"
    status = cli.main(["run", "--backends", "numpy,torch", "--ops", "conv2d", "--shapes", "1x1",
                       "--dtypes", "fp64", "--out", str(out), *FAST])
    assert status == 0
    return out


def test_load_has_a_row_per_cell_and_every_field(run_dir):
    df = convbench.load(run_dir)
    records = read_jsonl(run_dir / "results.jsonl")
    assert isinstance(df, pd.DataFrame) and len(df) == len(records) > 2
    assert [f.name for f in fields(Record)] == [c for c in df.columns if c not in ("key", "column")]
    assert list(df["key"]) == [r.key for r in records]
    timed = df["samples_ms"].map(len) > 0
    assert timed.any() and list(timed) == [r.status == "ok" for r in records]  # skipped cells: no samples
    assert list(df["status"]) == [r.status for r in records] and df["p50_ms"][~timed].isna().all()
    first = records[0]
    assert df.loc[0, "samples_ms"] == first.samples_ms and df.loc[0, "round_samples"] == first.round_samples
    assert df.loc[0, "geometry"]["type"] == "ConvGeometry"
    assert df.attrs["env"]["run"]["rounds"] == 2 and df.attrs["env"]["torch"]
    # the same from the results.jsonl file itself
    again = convbench.load(run_dir / "results.jsonl")
    assert list(again["key"]) == list(df["key"]) and again.attrs["env"] == df.attrs["env"]


def test_readme_analysis_lines(run_dir):
    df = convbench.load(run_dir)
    ok = df[(df.status == "ok") & df.p50_ms.notna()]
    best = ok.loc[ok.groupby(["shape", "dtype"]).p50_ms.idxmin(), ["shape", "dtype", "column", "p50_ms"]]
    for (shape, dtype), group in ok.groupby(["shape", "dtype"]):
        row = best[(best["shape"] == shape) & (best["dtype"] == dtype)].iloc[0]
        assert row["p50_ms"] == group["p50_ms"].min()
    speedup = ok[ok.backend != "torch"].pivot(index=["shape", "dtype", "layout"], columns="column", values="speedup")
    assert set(speedup.columns) == set(ok[ok.backend != "torch"]["column"])
    cell = ok[ok.backend == "numpy"].iloc[0]
    base = ok[(ok.backend == "torch") & (ok["shape"] == cell["shape"])].iloc[0]
    assert speedup.loc[(cell["shape"], cell["dtype"], cell["layout"]), cell["column"]] == cell["speedup"]
    assert cell["baseline"] == base["key"]


def test_load_many_stacks_runs_with_a_run_column(run_dir):
    both = convbench.load_many([run_dir, run_dir / "results.jsonl"], labels=["a", "b"])
    assert list(both.columns[:2]) == ["run", "key"]
    assert (both["run"] == "a").sum() == (both["run"] == "b").sum() == len(convbench.load(run_dir))
    assert set(both.attrs["envs"]) == {"a", "b"}
    with pytest.raises(ValueError, match="distinct"):
        convbench.load_many([run_dir, run_dir], labels=["x", "x"])
    with pytest.raises(ValueError, match="labels"):
        convbench.load_many([run_dir], labels=["x", "y"])


def test_load_of_nothing_names_the_path(tmp_path):
    with pytest.raises(ValueError, match="no results at"):
        convbench.load(tmp_path / "missing")
