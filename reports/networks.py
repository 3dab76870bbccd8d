"""Whole networks: the policies side by side, and where the network's time goes.

* the network table: per network cell (suite, dtype, layout), every policy's p50 — ``auto``,
  ``fused``, each conv algorithm forced (with the layers that fell back), torch eager and
  ``torch.compile`` — its speedup over torch eager and whether it matched the float64 reference;
* the breakdown: a network suite's layer cells (each with its ``count``, the occurrences in one
  forward), per backend: each layer's share of the summed layer time, its winning algorithm, the
  ``auto`` rule's choice; then the network time three ways: the oracle (every layer at its best
  algorithm: sum of count x best), ``auto`` (sum of count x auto's choice) and the measured
  whole-network cells, so a layer suite's weighted total reads against the network cell.
"""

from __future__ import annotations

from .tables import Table, _value, as_frame, auto_choice, column_name, fmt_ms


def _p50(r) -> float | None:
    return _value(r.p50_ms) if r.status == "ok" else None


def network_table(records) -> Table | None:
    df = as_frame(records)
    nets = df[df["op"] == "network"]
    if nets.empty:
        return None
    t = Table("whole networks — one forward per policy (p50 ms; speedup over torch eager)",
              ["suite", "network", "dtype", "layout", "policy", "p50 ms", "vs torch eager", "status", "note"])
    for (suite, shape, dtype, layout), group in nets.groupby(["suite", "shape", "dtype", "layout"], sort=False):
        eager = group[(group["backend"] == "torch") & (group["algorithm"] == "vendor")]
        base = _p50(eager.iloc[0]) if not eager.empty else None
        for r in group.itertuples(index=False):
            mine = _p50(r)
            vs = f"{base / mine:.2f}x" if base and mine and not (r.backend == "torch" and r.algorithm == "vendor") else ""
            time = fmt_ms(mine) if mine else ("not timed" if r.status == "ok" else r.status)
            note = r.message if r.status != "ok" or r.message else ""
            t.rows.append([suite, shape, dtype, layout, column_name(r), time, vs, r.status,
                           note[:140] + ("…" if len(note) > 140 else "")])
    t.notes.append("each network cell is checked against the float64 forward of the same network and weights, "
                   "layer by layer through the NumPy references; its tolerance is the longest conv's times the "
                   "number of conv layers (rounding carries forward layer to layer)")
    return t


def breakdown_tables(records) -> list[Table]:
    df = as_frame(records)
    if "count" not in df.columns:
        return []
    layers = df[(df["op"] == "conv2d") & df["suite"].isin(set(df.loc[df["op"] == "network", "suite"]))]
    tables = []
    for (suite, dtype, layout, backend), group in layers.groupby(["suite", "dtype", "layout", "backend"], sort=False):
        timed = group[(group["status"] == "ok") & group["p50_ms"].notna()]
        if timed.empty:
            continue
        rows, oracle, auto_total, auto_complete = [], 0.0, 0.0, True
        for (label, shape), cells in timed.groupby(["label", "shape"], sort=False):
            best = cells.sort_values("p50_ms", kind="stable").iloc[0]
            count = int(best["count"])
            oracle += count * best["p50_ms"]
            auto = auto_choice(best) if backend.startswith("triton") else None
            auto_cell = cells[cells["algorithm"] == auto] if auto else cells.iloc[0:0]
            if auto and not auto_cell.empty:
                auto_total += count * float(auto_cell["p50_ms"].iloc[0])
            else:
                auto_complete = False
            rows.append((label, shape, count, best, auto, auto_cell))
        t = Table(f"{suite} · {dtype} · {layout} · {backend} — per-layer breakdown (count x p50 of the best algorithm)",
                  ["layer", "shape", "count", "best algorithm", "best p50 ms", "count x best ms", "share",
                   "auto picks", "auto / best"])
        for label, shape, count, best, auto, auto_cell in sorted(rows, key=lambda r: -r[2] * r[3]["p50_ms"]):
            share = count * best["p50_ms"] / oracle if oracle else 0.0
            regret = f"{float(auto_cell['p50_ms'].iloc[0]) / best['p50_ms']:.2f}x" if auto and not auto_cell.empty \
                else ""
            t.rows.append([label, shape, str(count), best["algorithm"], fmt_ms(best["p50_ms"]),
                           fmt_ms(count * best["p50_ms"]), f"{share:.0%}", auto or "", regret])
        nets = df[(df["suite"] == suite) & (df["op"] == "network") & (df["dtype"] == dtype)
                  & (df["layout"] == layout)]
        measured = [f"{column_name(r)} {fmt_ms(_p50(r))} ms" for r in nets.itertuples(index=False) if _p50(r)]
        t.notes.append(f"oracle (every layer at its best algorithm): {fmt_ms(oracle)} ms of convolutions"
                       + (f"; auto: {fmt_ms(auto_total)} ms" if backend.startswith("triton") and auto_complete else "")
                       + ("; measured whole network: " + ", ".join(measured) if measured
                          else "; no whole-network cell timed"))
        t.notes.append("the layer sums count convolutions only; the network cells also run the norms, pools, "
                       "activations and the classifier, and their launches back to back")
        tables.append(t)
    return tables
