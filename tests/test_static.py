"""The static compile check, without a GPU: every kernel spec compiles for sm_80 and sm_90, no
default config spills, tensor cores are where expected, and ``convbench static --compare``
catches planted regressions (a spilling tile, lost tensor cores, register growth).

Compiling every spec is the expensive part: results are cached on disk (shared with
``convbench static`` and ``scripts/static_gate.sh``), so after the gate has run this is quick.
"""

import json

import pytest

from convbench import kernels
import _static_kernels as planted
from convbench import cli
from convbench.reports import static_report
from convbench.suites import static
from convbench.suites.static import sass

TARGETS = ("sm_80", "sm_90")
SPECS = kernels.static_specs()
DEFAULT_SPECS = [s for s in SPECS if s.default]
TC_SPECS = [s for s in SPECS if s.expect_tensor_cores]


@pytest.fixture(scope="module")
def results():
    """Every (spec, target) of the project, compiled once per session (or read from the cache)."""
    return {(r.name, r.target): r for r in static.analyse_all(TARGETS, SPECS)}


def _describe(r):
    return (f"{r.name} [{r.target}]: {r.registers} regs, spill {r.spill_store_bytes}/"
            f"{r.spill_load_bytes} B, stack {r.stack_bytes} B, smem {r.total_shared_bytes} B, MMA {r.mma}")


@pytest.mark.parametrize("name", [s.name for s in SPECS])
def test_spec_compiles_for_sm80_and_sm90(results, name):
    for target in TARGETS:
        r = results[(name, target)]
        assert r.error is None, f"{name} does not compile for {target}: {r.error}"
        assert r.sass_instructions > 0 and r.registers > 0, _describe(r)
        assert r.total_shared_bytes <= r.shared_limit_bytes, \
            f"{_describe(r)}: shared memory over the {target} limit of {r.shared_limit_bytes} B"


@pytest.mark.parametrize("name", [s.name for s in DEFAULT_SPECS])
def test_default_config_does_not_spill(results, name):
    for target in TARGETS:
        r = results[(name, target)]
        assert r.error is None, r.error
        assert not r.spills, f"default config spills: {_describe(r)}"


@pytest.mark.parametrize("spec", TC_SPECS, ids=lambda s: s.name)
def test_tensor_cores_where_expected(results, spec):
    r80, r90 = results[(spec.name, "sm_80")], results[(spec.name, "sm_90")]
    assert r80.mma.get("HMMA", 0) > 0, f"no HMMA on sm_80: {_describe(r80)}"
    if not spec.expect_wgmma:  # a tile under one warpgroup's 64 rows: mma.sync on sm_90 as well
        assert r90.mma.get("HMMA", 0) > 0 and not r90.mma.get("HGMMA"), f"expected HMMA only: {_describe(r90)}"
        return
    assert r90.mma.get("HGMMA", 0) > 0, (
        f"no HGMMA (wgmma) on sm_90: {_describe(r90)}"
        + (" -- mma.sync only; wgmma needs num_warps a multiple of 4 and a 64-row tile per warpgroup"
           if r90.mma.get("HMMA") else ""))


# ----------------------------------------------------------------------- the reading itself
SASS_LISTING = """
        /*0000*/                   IMAD.MOV.U32 R1, RZ, RZ, c[0x0][0x28] ;
        /*0010*/              @!P0 STL.64 [R1], R2 ;
        /*0020*/                   STL.128 [R1+0x10], R4 ;
        /*0030*/               @P1 LDL.LU R5, [R1+0x4] ;
        /*0040*/                   LDL.U8 R6, [R1+0x8] ;
        /*0050*/                   HMMA.16816.F32 R8, R12, R16, R8 ;
        /*0060*/                   HGMMA.64x128x16.F32 R24, gdesc[UR4], RZ, !UPT ;
        /*0070*/                   BRA 0x70;
        /*0080*/                   NOP;
"""


def test_sass_counts_spills_mma_and_skips_padding():
    count, ops = sass.parse_sass(SASS_LISTING)
    assert count == 8  # the NOP padding is not counted
    stores, loads, mma = sass.count_ops(ops)
    assert (stores, loads) == (8 + 16, 4 + 1)
    assert mma == {"HGMMA": 1, "HMMA": 1}
    usage = sass.parse_res_usage(" Function k:\n  REG:40 STACK:16 SHARED:1024 LOCAL:0 CONSTANT[0]:400\n")
    assert usage == {"k": {"REG": 40, "STACK": 16, "SHARED": 1024, "LOCAL": 0, "CONSTANT[0]": 400}}


REFERENCE_READING = """
import json, sys
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
import _static_kernels as planted
from convbench.suites.static import sass
spec, out = planted.GOOD, {}
for cc in (80, 90):
    k = triton.compile(ASTSource(fn=spec.fn, signature=spec.signature, constexprs=spec.constexprs),
                       target=GPUTarget("cuda", cc, 32),
                       options={"num_warps": spec.num_warps, "num_stages": spec.num_stages})
    r = sass.disassemble(k.asm["cubin"], k.metadata.name)
    out[f"sm_{cc}"] = [r.registers, r.stack_bytes, r.spill_store_bytes, r.spill_load_bytes, r.instructions, r.mma]
print(json.dumps(out))
"""


def test_batched_disassembly_matches_cuobjdump():
    """The fast path (one nvdisasm over many kernels, sm_90 compiled from sm_80's TTIR) reads
    exactly what cuobjdump -sass reads from each cubin compiled straight from the source."""
    import os
    import subprocess
    import sys

    fast = static.analyse_all(TARGETS, [planted.GOOD], cache=False)
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = os.pathsep.join(p or os.getcwd() for p in sys.path)
    proc = subprocess.run([sys.executable, "-c", REFERENCE_READING], env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    ref = json.loads(proc.stdout.strip().splitlines()[-1])
    for r in fast:
        got = [r.registers, r.stack_bytes, r.spill_store_bytes, r.spill_load_bytes, r.sass_instructions, r.mma]
        assert got == ref[r.target], r.target
    assert fast[0].mma.get("HMMA") and fast[1].mma.get("HGMMA")


# --------------------------------------------------------------------- planted regressions
def _static(capsys, *args):
    status = cli.main(["static", "--target", "sm_80,sm_90", "-q", *args])
    return status, capsys.readouterr().out


@pytest.fixture(scope="module")
def baseline(tmp_path_factory):
    """``convbench static`` on the sane test kernel, written as a baseline."""
    path = tmp_path_factory.mktemp("static") / "base.json"
    assert cli.main(["static", "--specs", "_static_kernels:good_specs", "--format", "json", "--out", str(path),
                     "-q"]) == 0
    return path


def test_unchanged_kernel_passes_the_gate(baseline, capsys):
    status, out = _static(capsys, "--specs", "_static_kernels:good_specs", "--compare", str(baseline))
    assert status == 0, out
    assert "OK: no static regression" in out


def test_planted_spill_and_register_growth_are_caught(baseline, capsys):
    status, out = _static(capsys, "--specs", "_static_kernels:big_tile_specs", "--compare",
                          str(baseline), "--format", "json")
    assert status == 1, out
    flags = {(f["kind"], f["target"]) for f in json.loads(out)["flags"]}
    assert ("spill", "sm_80") in flags and ("default_spill", "sm_80") in flags, flags
    assert ("registers", "sm_90") in flags, flags
    # the same growth passes when the threshold allows it (the flag follows --reg-threshold)
    status, out = _static(capsys, "--specs", "_static_kernels:big_tile_specs", "--compare",
                          str(baseline), "--format", "json", "--reg-threshold", "1.0", "--target", "sm_90")
    assert status == 0 and not json.loads(out)["flags"], out


def test_lost_tensor_cores_are_caught(baseline, capsys):
    status, out = _static(capsys, "--specs", "_static_kernels:fp32_specs", "--compare", str(baseline))
    assert status == 1, out
    assert "lost HMMA" in out and "lost HGMMA" in out, out


def _doc(**fields):
    r = static.StaticResult(name="k", target="sm_90", registers=100, sass_instructions=500,
                            mma={"HGMMA": 4}, triton_version="3.6.0", ptxas_version="12.8.93")
    base = static.to_document([r], ["sm_90"])
    base["results"][0].update(fields)
    return base


def test_compare_flags_shared_memory_over_the_limit_and_lists_new_and_missing():
    base = _doc()
    over = _doc(shared_bytes=static.SHARED_LIMIT[90] + 1)
    cmp = static.compare_documents(base, over)
    assert [f.kind for f in cmp.flags] == ["shared_memory"]
    renamed = _doc(name="k2")
    cmp = static.compare_documents(base, renamed)
    assert not cmp.failed and cmp.new == [("k2", "sm_90")] and cmp.missing == [("k", "sm_90")]
    assert static.compare_documents(base, renamed, strict=True).failed
    assert "missing (in baseline only): k [sm_90]" in static_report.render_comparison(cmp)


def test_compare_flags_compile_errors_and_tolerates_small_register_changes():
    base = _doc()
    assert not static.compare_documents(base, _doc(registers=110)).failed   # +10%: at the threshold
    assert static.compare_documents(base, _doc(registers=111)).failed
    broken = _doc(error="CompilationError: boom", registers=0, mma={})
    assert [f.kind for f in static.compare_documents(base, broken).flags] == ["compile_error"]


def test_bad_arguments_are_usage_errors(capsys):
    assert cli.main(["static", "--target", "sm_75"]) == 2
    assert cli.main(["static", "--specs", "no_colon"]) == 2
    assert "sm_75" in capsys.readouterr().err
    with pytest.raises(ValueError, match="target"):
        static.parse_target("sm_70")


def test_committed_baseline_is_readable():
    import pathlib

    path = pathlib.Path(__file__).parents[1] / "reports" / "static" / "baseline-triton3.6.0.json"
    if not path.exists():
        pytest.skip(f"{path} not generated yet (scripts/static_gate.sh --update writes it)")
    doc = static.load_document(str(path))
    assert doc["triton_version"] == "3.6.0" and set(doc["targets"]) == set(TARGETS)
    assert {r.target for r in static.results_of(doc)} == set(TARGETS)
