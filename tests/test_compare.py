"""``convbench compare``: per-cell verdicts from raw samples (Mann-Whitney U + effect size + BH FDR),
correctness changes, one-sided cells, output formats and exit status.  Synthetic samples with a
fixed seed keep every verdict deterministic; a real A/A pair through the runner is in
``tests/test_calibrate.py``."""

import json

import numpy as np
import pytest

from convbench.reports import compare as R
from convbench.suites.measure import stats as S
from convbench.suites.regress import verdicts as C
from convbench import cli
from convbench.suites.measure.records import Record, ResultStore

N_CELLS = 12


def _record(i, samples, **kw):
    d = dict(suite="quick", op="conv2d", algorithm="vendor", backend="torch" if i % 2 else "numpy",
             shape=f"n1-c16-{8 + i}x{8 + i}-k16-3x3-s1-p1", dtype="fp32", layout="nchw", status="ok",
             passed=True, max_rel_err=1e-7, samples_ms=[float(x) for x in samples],
             p50_ms=float(np.median(samples)) if len(samples) else None)
    d.update(kw)
    return Record.from_dict(d)


def _run(seed, n=25, cv=0.04, slow=None):
    """One synthetic run: N_CELLS cells, lognormal timing noise; ``slow={i: factor}``."""
    rng = np.random.default_rng(seed)
    slow = slow or {}
    return [_record(i, (0.5 + 0.1 * i) * slow.get(i, 1.0) * rng.lognormal(0.0, cv, n)) for i in range(N_CELLS)]


def _scaled(records, i, factor):
    """``records`` with cell ``i``'s samples multiplied by ``factor`` (the same draws otherwise)."""
    out = list(records)
    r = out[i]
    out[i] = _record(i, np.asarray(r.samples_ms) * factor)
    return out


def _write(tmp_path, name, records):
    store = ResultStore(tmp_path / name)
    store.start([])
    store.rewrite(records)
    return tmp_path / name


def test_aa_runs_are_not_regressions(tmp_path, capsys):
    base, new = _write(tmp_path, "a", _run(1)), _write(tmp_path, "b", _run(2))
    assert cli.main(["compare", str(base), str(new)]) == 0
    out = capsys.readouterr().out
    assert "OK: no significant slowdown" in out
    cmp = C.compare_paths(base, new)
    assert not any(c.verdict in ("SLOWER", "FASTER") for c in cmp.cells)
    assert 0.97 < cmp.geomean() < 1.03


def test_thirty_percent_slower_cell_fails_and_is_named(tmp_path, capsys):
    a = _run(1)
    b = _scaled(_run(2), 5, 1.3)
    base, new = _write(tmp_path, "a", a), _write(tmp_path, "b", b)
    assert cli.main(["compare", str(base), str(new), "--format", "json"]) == 1
    doc = json.loads(capsys.readouterr().out)
    slow = [c["key"] for c in doc["cells"] if c["verdict"] == "SLOWER"]
    assert slow == [a[5].key]
    assert doc["failed"] and [c["key"] for c in doc["cells"] if c["regression"]] == slow


def test_two_percent_slower_cell_is_not_a_regression(tmp_path):
    a = _run(1, n=200, cv=0.02)
    b = _scaled(a, 5, 1.02)  # a real, significant, but small shift
    cmp = C.compare(a, b)
    cell = next(c for c in cmp.cells if c.key == a[5].key)
    assert cell.ratio == pytest.approx(1.02)
    assert cell.verdict in ("SAME", "UNSURE") and not cmp.failed
    # with a 1% threshold the same change is called
    assert next(c for c in C.compare(a, b, threshold=0.01).cells if c.key == a[5].key).verdict == "SLOWER"


def test_faster_same_and_unsure_verdicts():
    a = _run(3, n=40, cv=0.02)
    b = _scaled(_scaled(a, 0, 0.7), 1, 1.0)
    med = np.median(a[2].samples_ms)  # a large change in the median, but wildly noisy samples
    b[2] = _record(2, med * np.array([0.5, 0.9, 1.6, 1.7, 1.8]))
    cmp = {c.key: c for c in C.compare(a, b).cells}
    assert cmp[a[0].key].verdict == "FASTER"
    assert cmp[a[1].key].verdict == "SAME" and cmp[a[1].key].ci_lo <= 1.0 <= cmp[a[1].key].ci_hi
    assert cmp[a[2].key].verdict == "UNSURE"


def test_correctness_changes(tmp_path, capsys):
    a = _run(1)
    b = list(_run(2))
    b[0] = _record(0, b[0].samples_ms, passed=False, status="fail", message="max rel err 3e-2 > tol")
    b[1] = _record(1, b[1].samples_ms, max_rel_err=5e-5)       # 500x worse, still passing
    b[2] = _record(2, b[2].samples_ms, max_rel_err=8e-7)       # 8x: within the 10x allowance
    cmp = {c.key: c for c in C.compare(a, b).cells}
    assert cmp[a[0].key].correctness == "LOST" and cmp[a[0].key].regression
    assert cmp[a[1].key].correctness == "ERR_GREW" and "500x" in cmp[a[1].key].note
    assert cmp[a[2].key].correctness == ""
    back = {c.key: c for c in C.compare(b, a).cells}
    assert back[a[0].key].correctness == "FIXED" and not back[a[0].key].regression
    assert cli.main(["compare", str(_write(tmp_path, "a", a)), str(_write(tmp_path, "b", b))]) == 1
    assert "LOST" in capsys.readouterr().out


def test_untimed_cells_are_compared_on_correctness_only():
    a = [_record(0, [], backend="triton-interpret"), _record(1, [], backend="triton-interpret")]
    b = [_record(0, [], backend="triton-interpret"),
         _record(1, [], backend="triton-interpret", passed=False, status="fail")]
    cmp = C.compare(a, b)
    assert [c.verdict for c in cmp.cells] == ["UNTIMED", "UNTIMED"]
    assert [c.correctness for c in cmp.cells] == ["", "LOST"] and cmp.failed
    assert cmp.geomean() is None


def test_cells_in_one_run_only_are_listed(tmp_path):
    a, b = _run(1), _run(2)
    extra = _record(99, [1.0, 1.1, 0.9])
    cmp = C.compare(a + [extra], b[1:])
    assert cmp.only_base == sorted([a[0].key, extra.key]) and cmp.only_new == []
    text = R.render(cmp)
    assert f"2 cell(s) only in base: {', '.join(sorted([a[0].key, extra.key]))}" in text
    assert not cmp.failed


def test_markdown_report_file(tmp_path, capsys):
    base, new = _write(tmp_path, "a", _run(1)), _write(tmp_path, "b", _scaled(_run(2), 3, 1.5))
    out = tmp_path / "report.md"
    assert cli.main(["compare", str(base / "results.jsonl"), str(new), "--format", "markdown",
                     "--out", str(out), "--show", "changed"]) == 1
    text = out.read_text()
    assert text.startswith("# convbench compare") and "| SLOWER" in text and "geometric mean" in text
    assert "FAIL: 1 regression(s)" in capsys.readouterr().err


def test_benjamini_hochberg_matches_the_textbook_procedure():
    p = [0.01, 0.04, 0.03, 0.005, 0.5]
    q = S.benjamini_hochberg(p)
    # sorted p: .005 .01 .03 .04 .5 -> p*m/rank: .025 .025 .05 .05 .5, monotone from the top
    assert q == pytest.approx([0.025, 0.05, 0.05, 0.025, 0.5])
    assert S.benjamini_hochberg([]) == []


def test_ratio_ci_covers_the_true_shift():
    rng = np.random.default_rng(7)
    base, new = rng.lognormal(0, 0.05, 60), 1.1 * rng.lognormal(0, 0.05, 60)
    lo, hi = S.ratio_ci(base, new)
    assert lo < 1.1 < hi and hi - lo < 0.06
    lo, hi = S.ratio_ci(rng.lognormal(0, 0.1, 5000), rng.lognormal(0, 0.1, 5000))  # thinned, still valid
    assert lo < 1.0 < hi


def test_bad_inputs(tmp_path, capsys):
    assert cli.main(["compare", str(tmp_path / "nope"), str(tmp_path / "nope2")]) == 2
    assert "no results at" in capsys.readouterr().err
    with pytest.raises(ValueError, match="threshold"):
        C.compare([], [], threshold=-1)
    with pytest.raises(ValueError, match="alpha"):
        C.compare([], [], alpha=0)


def _all_scaled(records, factor, backend=None):
    """Every cell (of ``backend``, or all) slowed by ``factor``: a slower machine."""
    return [_record(i, np.asarray(r.samples_ms) * (factor if backend in (None, r.backend) else 1.0))
            for i, r in enumerate(records)]


def test_run_wide_drift_is_divided_out_and_reported():
    base, new = _run(1), _all_scaled(_run(2), 1.3)
    cmp = C.compare(base, new)
    assert set(cmp.drift) == {"numpy", "torch"}
    assert all(1.2 < f < 1.4 for f in cmp.drift.values()), cmp.drift
    assert not any(c.verdict in ("SLOWER", "FASTER") for c in cmp.cells)
    assert not cmp.failed
    assert any("moved together" in line for line in R.summary_lines(cmp))
    # the same drift fails when asked to, and raw times call every cell SLOWER
    assert C.compare(base, new, fail_on_drift=True).failed
    raw = C.compare(base, new, normalize="none")
    assert raw.drift == {} and all(c.verdict == "SLOWER" for c in raw.cells)


def test_cell_slowed_on_a_drifting_machine_is_still_named():
    base = _run(1)
    new = _scaled(_all_scaled(_run(2), 0.8), 3, 1.3)  # machine 20% faster, cell 3 30% slower
    cmp = C.compare(base, new)
    assert [c.key for c in cmp.regressions] == [C._key(new[3])]


def test_normalize_is_validated():
    with pytest.raises(ValueError, match="normalize"):
        C.compare(_run(1), _run(2), normalize="global")


# ------------------------------------------------------------------ rounds as the unit
def _round_record(i, rng, *, rounds=15, per_round=40, round_sd=0.05, factor=1.0, probe=None,
                  backend="torch"):
    """One cell sampled in ``rounds`` rounds: each round has its own offset (lognormal,
    ``round_sd``: a machine phase or a process), its samples 1% noise around it."""
    meds = (0.5 + 0.1 * i) * factor * rng.lognormal(0.0, round_sd, rounds)
    samples = np.concatenate([m * rng.lognormal(0.0, 0.01, per_round) for m in meds])
    return _record(i, samples, backend=backend, round_samples=[per_round] * rounds, rounds=rounds,
                   round_probe_ms=list(probe) if probe is not None else [])


def _round_run(seed, n_cells=40, slow=None, **kw):
    rng = np.random.default_rng(seed)
    slow = slow or {}
    return [_round_record(i, rng, factor=slow.get(i, 1.0), backend="torch" if i % 2 else "numpy", **kw)
            for i in range(n_cells)]


def test_round_effects_are_not_called_significant():
    """Identical code, per-round offsets of 10% (as measured on the CPU VM after the probe): a test on the raw samples calls many cells
    different (the samples of a round are not independent); the round-level test calls none."""
    alarms_rounds = alarms_samples = 0
    for seed in range(6):
        a, b = _round_run(2 * seed, round_sd=0.1), _round_run(2 * seed + 1, round_sd=0.1)
        cmp = C.compare(a, b)
        assert all(c.test == "rounds" for c in cmp.cells)
        alarms_rounds += sum(c.verdict in ("SLOWER", "FASTER") for c in cmp.cells)
        flat = [Record.from_dict({**r.to_dict(), "round_samples": [], "rounds": 1}) for r in b]
        flat_base = [Record.from_dict({**r.to_dict(), "round_samples": [], "rounds": 1}) for r in a]
        alarms_samples += sum(c.verdict in ("SLOWER", "FASTER") for c in C.compare(flat_base, flat).cells)
    assert alarms_rounds <= 1  # 240 cell comparisons at FDR 5%
    assert alarms_samples >= 10


def test_round_level_test_finds_thirty_percent_and_ignores_two():
    a = _round_run(100)
    cmp = C.compare(a, _round_run(101, slow={7: 1.3}))
    assert [c.key for c in cmp.regressions] == [a[7].key] and cmp.failed
    slow = next(c for c in cmp.cells if c.key == a[7].key)
    assert slow.ci_lo > 1.15 and slow.ci_hi < 1.45 and slow.test == "rounds"
    cmp2 = C.compare(a, _round_run(101, slow={7: 1.02}))
    assert not cmp2.failed


def test_speed_probe_puts_slow_phases_back_on_scale():
    """The new run's cell 3 ran entirely in a slow phase: its samples *and* its probe 1.6x."""
    rng = np.random.default_rng(7)
    probe = np.full(15, 0.01)
    a = [_round_record(i, rng, probe=probe * rng.lognormal(0, 0.002, 15)) for i in range(12)]
    b = []
    for i in range(12):
        f = 1.6 if i == 3 else 1.0
        b.append(_round_record(i, rng, factor=f, probe=probe * f * rng.lognormal(0, 0.002, 15)))
    probed = C.compare(a, b)
    assert probed.probe_cells == 12 and 0.95 < probed.probe_ratio < 1.1
    assert not probed.failed and 0.9 < next(c for c in probed.cells if c.key == a[3].key).ratio < 1.1
    raw = C.compare(a, b, normalize="backend")
    assert [c.key for c in raw.regressions] == [a[3].key]
    assert "machine speed by the probe" in "\n".join(R.summary_lines(probed))


def test_records_without_rounds_fall_back_to_the_sample_test():
    cmp = C.compare(_run(1), _run(2))
    assert all(c.test == "samples" and "single round" in c.note for c in cmp.cells if c.ratio is not None)


def test_welch_log_ratio():
    ratio, p, lo, hi = S.welch_log_ratio([1.0, 1.1, 0.9], [1.0, 1.1, 0.9])
    assert ratio == pytest.approx(1.0) and p == pytest.approx(1.0) and lo < 1 < hi
    rng = np.random.default_rng(3)
    base, new = rng.lognormal(0, 0.05, 15), 1.3 * rng.lognormal(0, 0.05, 15)
    ratio, p, lo, hi = S.welch_log_ratio(base, new)
    assert lo < 1.3 < hi and p < 1e-8 and lo < ratio < hi
    assert S.welch_log_ratio([2.0] * 3, [2.0] * 3)[1] == 1.0
    assert S.welch_log_ratio([2.0] * 3, [3.0] * 3)[1] == 0.0


def test_html_report_leads_with_regressions_then_the_ratio_plot(tmp_path, capsys):
    import re

    base, new = _write(tmp_path, "a", _run(1)), _write(tmp_path, "b", _scaled(_run(2), 3, 1.5))
    out = tmp_path / "compare.html"
    assert cli.main(["compare", str(base), str(new), "--format", "html", "--out", str(out)]) == 1
    page = out.read_text()
    assert page.startswith("<!DOCTYPE html>") and "FAIL: 1 regression(s)" in page
    assert page.index('id="headline"') < page.index('id="regressions"') < page.index('id="plots"') \
        < page.index('id="details"')
    slow = _run(1)[3].key
    regressions = page[page.index('id="regressions"'):page.index('id="plots"')]
    assert slow in regressions and "SLOWER" in regressions
    assert page.count('src="data:image/png;base64,') == 1
    assert all(r.startswith("data:") for r in re.findall(r'(?:src|href)="([^"]*)"', page))
    assert page.count("<tr>") >= N_CELLS + 2  # the regression row, the header rows, every cell


def test_html_ratio_plot_is_absent_without_timed_pairs():
    untimed = [_record(i, []) for i in range(3)]
    cmp = C.compare(untimed, untimed)
    assert R.ratio_plot_png(cmp) is None
    assert "No cell was timed on both sides" in R.render(cmp, "html")
