"""The training-modes table: per layer, fprop / dgrad / wgrad / whole-step times side by side.

A conv2d case of a training suite appears once per mode (its shape string ends in ``-dgrad``,
``-wgrad`` or ``-fwd+bwd``); this table joins the modes of one layer into one row per backend,
each mode's time being its fastest algorithm's (the training step's forward algorithm varies;
dgrad and wgrad run one kernel each), next to the baseline's (torch: cuDNN's fprop, dgrad and
wgrad) and the step's speedup over it.
"""

from __future__ import annotations

from convbench.suites.plan.shapes import MODES

from .tables import Table, _value, as_frame, fmt_ms

MODE_HEADERS = {"fwd": "fprop", "dgrad": "dgrad", "wgrad": "wgrad", "fwd+bwd": "fwd+bwd"}


def _layer_shape(shape: str, mode: str) -> str:
    suffix = f"-{mode}"
    return shape[: -len(suffix)] if mode != "fwd" and shape.endswith(suffix) else shape


def training_table(records) -> Table | None:
    """None when the records hold no backward-mode cells."""
    df = as_frame(records)
    if "mode" not in df.columns or not (df["mode"] != "fwd").any():
        return None
    conv = df[df["op"] == "conv2d"].copy()
    conv["layer"] = [_layer_shape(s, m) for s, m in zip(conv["shape"], conv["mode"])]
    layers = set(conv.loc[conv["mode"] != "fwd", "layer"])
    conv = conv[conv["layer"].isin(layers)]
    headers = ["suite", "layer", "dtype", "layout", "backend"]
    headers += [f"{MODE_HEADERS[m]} ms" for m in MODES] + ["fwd+bwd vs torch", "fastest fwd+bwd algorithm"]
    t = Table("conv2d training modes — fprop, dgrad, wgrad and the whole step per layer", headers)
    torch_step = {}
    rows = []
    for (suite, layer, dtype, layout, backend), group in conv.groupby(
            ["suite", "layer", "dtype", "layout", "backend"], sort=False):
        cells, best_step = [], ""
        for mode in MODES:
            timed = group[(group["mode"] == mode) & (group["status"] == "ok") & group["p50_ms"].notna()]
            present = group[group["mode"] == mode]
            if not timed.empty:
                best = timed.sort_values("p50_ms", kind="stable").iloc[0]
                cells.append(_value(best.p50_ms))
                if mode == "fwd+bwd":
                    best_step = best.algorithm
            elif present.empty:
                cells.append("")
            elif (present["status"] == "fail").any() or (present["status"] == "error").any():
                cells.append("✗")
            else:
                cells.append("not timed" if (present["status"] == "ok").any() else "n/a")
        if backend == "torch":
            torch_step[(suite, layer, dtype, layout)] = cells[-1]
        rows.append(([suite, layer, dtype, layout, backend], cells, best_step))
    for ident, cells, best_step in rows:
        base = torch_step.get(tuple(ident[:4]))
        step = cells[-1]
        vs = f"{base / step:.2f}x" if isinstance(base, float) and isinstance(step, float) and ident[4] != "torch" \
            else ""
        t.rows.append(ident + [fmt_ms(c) if isinstance(c, float) else c for c in cells] + [vs, best_step])
    t.notes.append("each mode's time is its fastest algorithm's p50; dgrad runs the phase kernel (a transposed "
                   "convolution of the gradient), wgrad the implicit GEMM over N*P*Q; fwd+bwd = forward + every "
                   "gradient (input, weight, bias) through autograd; fwd+bwd vs torch > 1 means faster than cuDNN's "
                   "step (torch.nn.grad / autograd on the same tensors)")
    return t
