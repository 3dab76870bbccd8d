"""Report tables, Markdown/HTML rendering and plots from synthetic records with known answers."""

import pytest

from convbench.reports.build import write_report
from convbench.reports.markdown import table_markdown, table_text
from convbench.reports.tables import accuracy_table, algorithm_table, cell_text, speedup_tables, timing_tables
from convbench.suites.measure.metrics import fill_speedups, fill_throughput
from convbench.suites.measure.peaks import Peaks
from convbench.suites.measure.records import Record, ResultStore

CONV = {"type": "ConvGeometry", "n": 1, "c": 16, "h": 8, "w": 8, "k": 16, "r": 3, "s": 3, "stride": [1, 1],
        "padding": [1, 1, 1, 1], "dilation": [1, 1], "groups": 1}


def _rec(backend, algorithm, shape, p50, *, status="ok", err=1e-7, dtype="fp16", device="cuda"):
    timed = p50 is not None
    err = None if status == "skipped" else err
    samples = [p50 * f for f in (0.98, 1.0, 1.0, 1.02, 0.99, 1.01)] if timed else []
    return Record(suite="s", op="conv2d", algorithm=algorithm, backend=backend, shape=shape, dtype=dtype,
                  layout="nchw", label=f"layer {shape}", geometry=CONV, device=device, status=status,
                  max_rel_err=err, rms_rel_err=err and err / 3, tolerance=1e-3,
                  passed=None if status == "skipped" else status == "ok", timed=timed,
                  p50_ms=p50, samples_ms=samples, n_samples=len(samples), flops=10**9, min_bytes=10**6,
                  message="max_rel 5e-2 > tol" if status == "fail" else "",
                  timing_note="" if timed else "not measured: Triton interpreter (correctness only)")


@pytest.fixture
def records():
    recs = [
        _rec("torch", "vendor", "A", 1.0), _rec("triton", "direct", "A", 2.0),
        _rec("triton", "implicit_gemm", "A", 0.5), _rec("triton", "winograd_f2", "A", 0.4, status="fail", err=5e-2),
        _rec("torch", "vendor", "B", 1.0), _rec("triton", "direct", "B", 0.8),
        _rec("triton", "implicit_gemm", "B", 0.9), _rec("triton", "winograd_f2", "B", None, status="skipped"),
    ]
    fill_speedups(recs)
    peaks = Peaks("cuda", copy_gbps=1000.0, matmul_tflops={"fp16": 10.0})
    for r in recs:
        fill_throughput(r, peaks)
    return recs


def test_timing_table_marks_the_fastest_correct_cell(records):
    (t,) = timing_tables(records)
    assert t.headers == ["layer", "shape", "torch (baseline)", "triton:direct", "triton:implicit_gemm",
                         "triton:winograd_f2"]
    row_a, row_b = t.rows
    assert row_a[2:] == ["1", "2", "0.5", "✗ 0.4"]  # the wrong winograd cell is shown as wrong, not best
    assert row_b[5] == "n/a"
    assert t.best == {(0, 4), (1, 3)}  # implicit_gemm on A, direct on B
    assert "**0.5**" in table_markdown(t) and "0.5 *" in table_text(t)


def test_untimed_cells_say_so():
    r = _rec("triton-interpret", "direct", "A", None)
    assert cell_text(r) == "✓ not timed"
    (t,) = timing_tables([r, _rec("torch", "vendor", "A", 1.0, device="cpu")])
    assert any("not measured" in n for n in t.notes)


def test_speedup_and_algorithm_tables(records):
    (t,) = speedup_tables(records)
    a_direct = t.rows[0][t.headers.index("triton:direct")]
    assert a_direct.startswith("0.50x [")
    alg = algorithm_table(records)
    rows = {row[1]: row for row in alg.rows}
    col = {h: i for i, h in enumerate(alg.headers)}
    assert rows["A"][col["winner"]] == "implicit_gemm" and rows["A"][col["runner-up"]] == "direct"
    assert rows["A"][col["margin"]] == "4.00x" and rows["A"][col["torch / winner"]] == "2.00x"
    assert rows["B"][col["winner"]] == "direct" and rows["B"][col["margin"]] == "1.12x"
    from convbench import kernels
    from convbench.reference.geometry import ConvGeometry

    import torch

    auto = kernels.choose_algorithm(ConvGeometry(1, 16, 8, 8, 16, 3, 3, (1, 1), (1, 1, 1, 1)), torch.float16)
    assert rows["A"][col["auto picks"]] == auto
    expected = {"implicit_gemm": "1.00x", "direct": "4.00x"}.get(auto)
    if expected:
        assert rows["A"][col["auto / best"]] == expected


def test_accuracy_table_reports_worst_cell(records):
    t = accuracy_table(records)
    row = next(r for r in t.rows if r[2] == "winograd_f2")
    assert row[4:6] == ["1", "0"] and row[6] == "5.00e-02" and row[9] == "50.000"


def test_write_report_files(tmp_path, records):
    ResultStore(tmp_path).rewrite(records)
    env = {"gpu": "Test GPU", "gpu_sms": 1, "python": "3", "peaks": {"cuda": {"copy_gbps": 1000.0,
                                                                              "matmul_tflops": {"fp16": 10.0}}}}
    report = write_report(tmp_path, records, env)
    assert sorted(report.plots) == ["roofline-cuda.png", "speedup-s-fp16-nchw.png", "winners-s.png"]
    for name in report.plots:
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = report.markdown.read_text()
    assert "device: Test GPU" in md and "![roofline-cuda.png](roofline-cuda.png)" in md
    assert "## Failures" in md and "max_rel 5e-2" in md
    page = report.html.read_text()
    assert '<td class="best">0.5</td>' in page and 'alt="speedup-s-fp16-nchw.png"' in page


def test_tables_take_frames_with_repeated_index_and_foreign_records(records):
    import pandas as pd

    from convbench.reports.tables import all_tables, summary_table
    from convbench.suites.measure.frame import records_frame

    one = {name: [vars(t) for t in tables] for name, tables in all_tables(records).items()}
    stacked = pd.concat([records_frame(records[:4]), records_frame(records[4:])])  # index 0-3 twice
    assert {name: [vars(t) for t in tables] for name, tables in all_tables(stacked).items()} == one
    # a geometry this version cannot rebuild: the auto column says so, the report is still built
    foreign = _rec("triton", "direct", "C", 1.5)
    foreign.geometry = {"type": "ConvGeometry", "n": 1, "bias": True}
    rows = {row[1]: row for row in algorithm_table(records + [foreign]).rows}
    assert rows["C"][10] == "?"
    odd = _rec("numpy", "direct", "A", 1.0, device="cpu")
    odd.status = "stale"  # a status this version does not know still counts as a cell
    (row,) = [r for r in summary_table([odd]).rows]
    assert row[:2] == ["numpy", "1"] and row[2:6] == ["0", "0", "0", "0"]


def test_grid_rows_keep_first_appearance_order_when_a_cell_repeats(records):
    again = _rec("triton", "direct", "A", 3.0)  # the same (layer, shape, column) again, last
    (t,) = timing_tables(records + [again])
    assert [row[1] for row in t.rows] == ["A", "B"]
    assert t.rows[0][t.headers.index("triton:direct")] == "3"  # the later copy wins, as before


# ------------------------------------------------------------------ the answer first (headline)
def test_headline_geomean_interval_wins_and_correctness(records):
    from convbench.reports.headline import headline

    top = headline(records, {"gpu": "Test GPU", "torch": "2.x", "triton": "3.6.0"})
    assert top.device.startswith("Test GPU") and "triton 3.6.0" in top.device
    (line,) = top.speedups
    (b,) = line.backends
    # best correct triton cell per shape: A implicit_gemm 1.0/0.5 = 2x, B direct 1.0/0.8 = 1.25x
    assert b.backend == "triton" and b.shapes == 2
    assert b.geomean == pytest.approx((2.0 * 1.25) ** 0.5, rel=0.02)
    assert b.lo < b.geomean < b.hi and b.hi / b.lo < 1.2  # the samples spread +-2%
    # the failed winograd cell (0.4 ms) wins nothing; the vendor baseline wins no shape here
    assert dict(line.wins) == {"triton:implicit_gemm": 1, "triton:direct": 1}
    c = top.correctness
    assert (c.checked, c.passed, c.failed, c.errored, c.skipped) == (7, 6, 1, 0, 1)
    assert c.worst_ratio == pytest.approx(50.0) and "winograd_f2" in c.worst_cell and not c.ok
    lines = top.lines()
    assert lines[0] == top.device and lines[-1].startswith("correctness: 6 of 7")


def test_headline_says_not_timed_for_interpreter_cells():
    from convbench.reports.headline import headline

    recs = [_rec("torch", "vendor", "A", 1.0, device="cpu"), _rec("triton-interpret", "direct", "A", None),
            _rec("triton-interpret", "implicit_gemm", "A", None)]
    fill_speedups(recs)
    (line,) = headline(recs, {}).speedups
    (b,) = line.backends
    assert b.geomean is None and b.untimed == 2 and "not timed (2 cells" in line.text()


def test_winners_heatmap_grid_states(records):
    from convbench.reports.heatmap import heatmap_grid

    records = records + [_rec("triton-interpret", "direct", "B", None)]
    fill_speedups(records)
    rows, columns, cells = heatmap_grid(records, "s")
    assert rows == ["conv2d: layer A", "conv2d: layer B"]
    assert columns[0] == "torch (baseline)" and "interp:direct" in columns
    assert cells[("conv2d: layer A", "torch (baseline)")][:2] == ("value", 1.0)
    assert cells[("conv2d: layer A", "triton:implicit_gemm")][:2] == ("value", pytest.approx(2.0, rel=0.02))
    assert cells[("conv2d: layer A", "triton:winograd_f2")][0] == "failed"
    assert cells[("conv2d: layer B", "triton:winograd_f2")][0] == "skipped"
    assert cells[("conv2d: layer B", "interp:direct")][0] == "untimed"
    assert ("conv2d: layer A", "interp:direct") not in cells  # blank: never ran
    # a shape only the baseline ran is no row
    lonely = records + [_rec("torch", "vendor", "C", 1.0)]
    fill_speedups(lonely)
    assert heatmap_grid(lonely, "s")[0] == rows


def test_report_html_is_one_self_contained_file_that_leads_with_the_answer(tmp_path, records):
    import re

    ResultStore(tmp_path).rewrite(records)
    env = {"gpu": "Test GPU", "peaks": {"cuda": {"copy_gbps": 1000.0, "matmul_tflops": {"fp16": 10.0}}}}
    report = write_report(tmp_path, records, env)
    assert report.plots[0] == "winners-s.png" and (tmp_path / "winners-s.png").exists()  # PNGs still beside it
    page = report.html.read_text()
    # order: headline, plots, details
    assert page.index('id="headline"') < page.index('id="plots"') < page.index('id="details"')
    assert page.count('src="data:image/png;base64,') == len(report.plots)
    # nothing fetched: no src/href other than data URIs, no external stylesheet or script
    refs = re.findall(r'(?:src|href)="([^"]*)"', page)
    assert refs and all(r.startswith("data:") for r in refs)
    assert "<link" not in page and "http://" not in page and "https://" not in page
    assert 'class="sortable"' in page and "position: sticky" in page and 'class="scroll"' in page
    assert '<details id="section-timing">' in page and '<details id="section-algorithms" open>' in page
    md = report.markdown.read_text()
    assert md.index("## Headline") < md.index("## Plots") < md.index("## Summary")
