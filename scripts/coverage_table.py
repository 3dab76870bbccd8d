#!/usr/bin/env python3
"""Which conv2d algorithms apply to three layers the GEMM family used to refuse (the ResNet-50 RGB stem,
a MobileNetV2 depthwise 3x3, a 1x1 with K=8), with the static registers / shared memory / tensor-core
instructions of each default fp16 channels_last config for sm_80 and sm_90 (compiled for the full-size
layer on the CPU) and the measured error against float64 (the same layer at a small batch and image,
under the interpreter).  Prints a Markdown table:

    .venv/bin/python scripts/coverage_table.py > reports/static/coverage-stem-depthwise-small-k.md
"""
from convbench.runtime import use_interpreter_without_gpu

use_interpreter_without_gpu()  # before convbench.kernels is imported (Triton reads it at definition)

import numpy as np  # noqa: E402
import torch  # noqa: E402

from convbench import kernels  # noqa: E402
from convbench.kernels.conv import im2col, implicit_gemm  # noqa: E402
from convbench.reference.conv import direct as ref  # noqa: E402
from convbench.reference.geometry import ConvGeometry  # noqa: E402
from convbench.suites import static  # noqa: E402
from convbench.suites.measure.accuracy import tolerance  # noqa: E402

G = ConvGeometry
layers = {
 "ResNet-50 stem 3->64 7x7/2 (N=32, 224)": G(32, 3, 224, 224, 64, 7, 7, (2, 2), (3, 3, 3, 3)),
 "MobileNetV2 dw 144 3x3/1 (N=32, 56)": G(32, 144, 56, 56, 144, 3, 3, (1, 1), (1, 1, 1, 1), groups=144),
 "1x1 256->8 (N=32, 14)": G(32, 256, 14, 14, 8, 1, 1),
}
small = {  # the same layer shapes with small N/H/W for the interpreter error measurement
 "ResNet-50 stem 3->64 7x7/2 (N=32, 224)": G(1, 3, 20, 20, 64, 7, 7, (2, 2), (3, 3, 3, 3)),
 "MobileNetV2 dw 144 3x3/1 (N=32, 56)": G(1, 144, 6, 6, 144, 3, 3, (1, 1), (1, 1, 1, 1), groups=144),
 "1x1 256->8 (N=32, 14)": G(1, 256, 5, 5, 8, 1, 1),
}
def meta(shape, dtype, cl):
    t = torch.empty(shape, dtype=dtype, device="meta")
    return t.contiguous(memory_format=torch.channels_last) if cl else t
print("| layer | algorithm | applies | fp16 nhwc default config | sm_80 regs / smem KB / MMA | sm_90 regs / smem KB / MMA | max rel err (fp16, fp32) / tol |")
print("|---|---|---|---|---|---|---|")
for name, geom in layers.items():
    for a in kernels.ALGORITHMS:
        why = a.unsupported(geom, torch.float16)
        if why:
            print(f"| {name} | {a.name} | no: {why} | | | | |"); continue
        cfg = a.default_config(geom, torch.float16, True)
        stat = ["", ""]
        if a.name in ("implicit_gemm", "im2col"):
            mod = implicit_gemm if a.name == "implicit_gemm" else im2col
            x, w, b = meta(geom.input_shape, torch.float16, True), meta(geom.weight_shape, torch.float16, False), None
            plans = mod._plan_unchecked(x, w, b, geom, "ieee", cfg)
            runs = [plans[0]] if a.name == "implicit_gemm" else [plans[1]]
            spec = runs[0].static_spec(f"table/{a.name}", default=False, expect_tensor_cores=True)
            for i, t in enumerate(("sm_80", "sm_90")):
                r = static.analyse(spec, t)
                mma = ",".join(f"{k}x{v}" for k, v in r.mma.items()) or "-"
                stat[i] = f"{r.registers} / {r.total_shared_bytes/1024:.1f} / {mma}" + (f" SPILL {r.spill_store_bytes}B" if r.spills else "")
        else:
            specs = [s for s in kernels.static_specs() if s.name.startswith(f"conv.{a.name}/fp16") and s.name.endswith(cfg.name)]
            if specs:
                for i, t in enumerate(("sm_80", "sm_90")):
                    r = static.analyse(specs[0], t)
                    stat[i] = f"{r.registers} / {r.total_shared_bytes/1024:.1f} / {','.join(r.mma) or '-'} (spec geometry)"
        sg = small[name]; errs = []
        for dt in (torch.float16, torch.float32):
            g = torch.Generator().manual_seed(1)
            x = torch.randn(sg.input_shape, generator=g).to(dt).contiguous(memory_format=torch.channels_last)
            w = (torch.randn(sg.weight_shape, generator=g) / np.sqrt(sg.reduction_length)).to(dt)
            out = kernels.conv2d(x, w, None, sg.stride, (sg.padding[0], sg.padding[2]), sg.dilation, sg.groups, algorithm=a.name)
            e = ref(x.double().numpy(), w.double().numpy(), sg)
            err = np.abs(out.double().numpy() - e).max() / np.abs(e).max()
            errs.append(f"{err:.1e}/{tolerance(dt, sg.reduction_length, algorithm_scale=a.error_scale):.0e}")
        print(f"| {name} | {a.name} | yes | {cfg.name} | {stat[0]} | {stat[1]} | {', '.join(errs)} |")
