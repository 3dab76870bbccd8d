"""Autotuning on the CPU: selection, pruning and the persistent cache, with an injected timer.

The timer is a fake that returns a time per config name, so which config wins is known; the
"GPU" is simulated by switching on ``can_tune`` and naming a device, so the whole path of
``conv2d(..., config="tune")`` and ``algorithm="auto"`` runs under the interpreter with real
kernels (every launch is checked against torch).
"""

from __future__ import annotations

import json
import multiprocessing
import warnings

import pytest
import torch
import torch.nn.functional as F

from convbench import kernels
from convbench.kernels import conv, tuning
from convbench.reference.geometry import ConvGeometry

GEOM = ConvGeometry(1, 8, 6, 6, 8, 3, 3, padding=(1, 1, 1, 1))


def _tensors(geom=GEOM, dtype=torch.float32):
    x = torch.randn(geom.input_shape).to(dtype)
    w = (torch.randn(geom.weight_shape) / 8).to(dtype)
    return x, w


def _key(algorithm="implicit_gemm", **over):
    fields = dict(device="FakeGPU", triton="3.6.0", source="abc", algorithm=algorithm,
                  geometry=tuning.geometry_id(GEOM), dtype="fp32", precision="ieee", layout="nchw")
    fields.update(over)
    return tuning.TuneKey(**fields)


class FakeTimer:
    """Milliseconds per config name (default 1.0); counts calls and runs each candidate once."""

    def __init__(self, times=None):
        self.times = times or {}
        self.calls = []

    def __call__(self, fn):
        fn()
        name = self.current
        self.calls.append(name)
        return self.times.get(name, 1.0)


def _timed_tune(algorithm, times, prune=None, geom=GEOM):
    x, w = _tensors(geom)
    timer = FakeTimer(times)
    algo = conv.BY_NAME[algorithm]

    def run_for(cfg):
        timer.current = cfg.name
        return conv.runner(algo, x, w, None, geom, "ieee", cfg)
    result = tuning.tune(algorithm, conv.candidates(algo, geom, x.dtype), run_for, timer=timer, prune=prune)
    return result, timer


# ------------------------------------------------------------------------------- selection
def test_tune_picks_the_fastest_and_records_every_candidate():
    configs = conv.candidates(conv.BY_NAME["implicit_gemm"], GEOM, torch.float32)
    fastest = configs[3].name
    result, timer = _timed_tune("implicit_gemm", {fastest: 0.25, configs[0].name: 0.5})
    assert result.config == fastest and result.ms == 0.25
    assert set(result.times_ms) == {c.name for c in configs} == set(timer.calls)
    assert result.tuning_s > 0


def test_pruned_and_failing_candidates_are_not_timed_and_say_why():
    configs = conv.candidates(conv.BY_NAME["implicit_gemm"], GEOM, torch.float32)
    dropped = {configs[0].name, configs[1].name}
    result, timer = _timed_tune("implicit_gemm", {configs[0].name: 0.01},
                                prune=lambda cfg: "spills on sm_90 (8 B stored)" if cfg.name in dropped else None)
    assert set(result.pruned) == dropped and "spills" in result.pruned[configs[0].name]
    assert not dropped & set(timer.calls) and result.config not in dropped

    def broken(cfg):
        raise RuntimeError("OutOfResources: shared memory")
    with pytest.raises(RuntimeError, match="no candidate config ran"):
        tuning.tune("implicit_gemm", configs, broken, timer=FakeTimer())


def test_candidates_are_the_configs_that_fit_the_problem():
    depthwise = ConvGeometry(1, 8, 6, 6, 8, 3, 3, padding=(1, 1, 1, 1), groups=8)
    direct = conv.BY_NAME["direct"]
    assert {c.name for c in conv.candidates(direct, depthwise, torch.float16)} == \
        {c.name for c in kernels.conv.direct.DEPTHWISE_CONFIGS}
    gemm = conv.candidates(conv.BY_NAME["im2col"], GEOM, torch.float32)
    assert gemm and all(c.fits(torch.float32) for c in gemm)
    assert len(conv.candidates(conv.BY_NAME["im2col"], GEOM, torch.float16)) > len(gemm)


# ------------------------------------------------------------------------------- the cache
def test_cache_round_trip_keys_and_invalidation(tmp_path):
    cache = tuning.TuneCache(tmp_path / "tune.json")
    result = tuning.TuneResult("implicit_gemm", "BM64-BN64-BK32-w4-s3-g8", 0.5, {"BM64-BN64-BK32-w4-s3-g8": 0.5})
    cache.put(_key(), result)
    again = tuning.TuneCache(tmp_path / "tune.json")  # another process
    assert again.get(_key()).config == "BM64-BN64-BK32-w4-s3-g8"
    # every key field re-tunes: another GPU, Triton, kernel source, dtype, layout, geometry
    for field, value in [("device", "OtherGPU"), ("triton", "3.7.0"), ("source", "def"), ("dtype", "fp16"),
                         ("layout", "nhwc"), ("precision", "tf32"), ("geometry", "n2")]:
        assert again.get(_key(**{field: value})) is None, field
    doc = json.loads((tmp_path / "tune.json").read_text())
    assert doc["schema"] == tuning.SCHEMA and len(doc["entries"]) == 1


def test_source_hash_follows_the_kernel_files(tmp_path):
    a, b = tmp_path / "k.py", tmp_path / "common.py"
    a.write_text("x = 1\n")
    b.write_text("y = 2\n")
    before = tuning.source_hash([a, b])
    assert tuning.source_hash([a, b]) == before
    a.write_text("x = 3\n")
    assert tuning.source_hash([a, b]) != before
    # and each algorithm hashes its own files: the GEMM family shares _gemm.py, direct does not
    assert conv.BY_NAME["implicit_gemm"].source_hash() != conv.BY_NAME["direct"].source_hash()
    assert any(f.endswith("_gemm.py") for f in conv.BY_NAME["im2col"].sources)
    assert not any(f.endswith("_gemm.py") for f in conv.BY_NAME["direct"].sources)


def test_corrupt_cache_is_set_aside_with_a_warning(tmp_path):
    path = tmp_path / "tune.json"
    path.write_text("{not json")
    cache = tuning.TuneCache(path)
    with pytest.warns(RuntimeWarning, match="unreadable"):
        assert cache.get(_key()) is None
    assert (tmp_path / "tune.json.corrupt").exists()
    cache.put(_key(), tuning.TuneResult("implicit_gemm", "c", 1.0))
    assert tuning.TuneCache(path).get(_key()).config == "c"
    path.write_text(json.dumps({"schema": 99, "entries": {}}))
    with pytest.warns(RuntimeWarning, match="schema"):
        assert tuning.TuneCache(path).get(_key()) is None


def _writer(path, i, n):
    cache = tuning.TuneCache(path)
    for j in range(n):
        cache.put(_key(geometry=f"g{i}-{j}"), tuning.TuneResult("implicit_gemm", f"c{i}", float(j)))


def test_concurrent_writers_lose_nothing(tmp_path):
    path = tmp_path / "tune.json"
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(path, i, 15)) for i in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    entries = tuning.TuneCache(path).entries()
    assert len(entries) == 45


# ------------------------------------------------------------------------------- conv2d paths
@pytest.fixture
def fake_gpu(tmp_path, monkeypatch):
    """A simulated GPU: tuning allowed, a device name, a private cache, a fake default timer."""
    monkeypatch.setenv(tuning.CACHE_ENV, str(tmp_path / "tune.json"))
    monkeypatch.setattr(conv, "can_tune", lambda x: True)
    monkeypatch.setattr(tuning, "device_name", lambda t: "FakeGPU")
    calls = []

    def fake_default(fn, **kw):
        fn()
        calls.append(1)
        return 1.0 + len(calls)  # each candidate slower than the one before: the first wins
    monkeypatch.setattr(tuning, "default_timer", fake_default)
    return calls


def test_conv2d_tune_tunes_once_then_reads_the_cache(fake_gpu):
    x, w = _tensors()
    expected = F.conv2d(x.double(), w.double(), padding=1)
    out = kernels.conv2d(x, w, padding=1, algorithm="implicit_gemm", config="tune")
    torch.testing.assert_close(out.double(), expected, rtol=1e-4, atol=1e-5)
    tuned_calls = len(fake_gpu)
    assert tuned_calls == len(conv.candidates(conv.BY_NAME["implicit_gemm"], GEOM, torch.float32))
    choice = kernels.resolve_conv2d(x, w, None, GEOM, algorithm="implicit_gemm", config="tune")
    assert choice.config_from == "tuned" and choice.tuning_s == 0.0 and len(fake_gpu) == tuned_calls
    first = conv.candidates(conv.BY_NAME["implicit_gemm"], GEOM, torch.float32)[0]
    assert choice.config_name == first.name  # the fake timer made the first candidate fastest


def test_auto_takes_the_fastest_measured_algorithm(fake_gpu, tmp_path):
    x, w = _tensors()
    assert kernels.resolve_conv2d(x, w, None, GEOM).algorithm_from == "heuristic"
    cache = tuning.default_cache()
    for name, ms in (("implicit_gemm", 0.9), ("winograd_f2", 0.3), ("direct", 0.5)):
        algo = conv.BY_NAME[name]
        cfg = algo.configs(torch.float32)[0]
        cache.put(conv.tune_key(algo, GEOM, x, "ieee"), tuning.TuneResult(name, cfg.name, ms, {cfg.name: ms}))
    choice = kernels.resolve_conv2d(x, w, None, GEOM)
    assert (choice.algorithm, choice.algorithm_from) == ("winograd_f2", "measured")
    out = kernels.conv2d(x, w, padding=1)
    torch.testing.assert_close(out.double(), F.conv2d(x.double(), w.double(), padding=1), rtol=1e-4, atol=1e-5)
    # an entry of an edited kernel (another source hash) no longer counts
    stale = conv.tune_key(conv.BY_NAME["fft"], GEOM, x, "ieee")
    cache.put(tuning.TuneKey(**{**stale.__dict__, "source": "old"}), tuning.TuneResult("fft", "x", 0.01))
    assert kernels.resolve_conv2d(x, w, None, GEOM).algorithm == "winograd_f2"


def test_auto_with_tune_tunes_every_applicable_algorithm(fake_gpu):
    x, w = _tensors()
    choice = kernels.resolve_conv2d(x, w, None, GEOM, config="tune")
    assert choice.algorithm_from == "measured" and choice.config_from == "tuned"
    tuned = {text.split("|")[3] for text in tuning.default_cache().entries()}
    assert tuned == {a.name for a in conv.ALGORITHMS if a.unsupported(GEOM, torch.float32) is None}


def test_tune_without_a_gpu_is_the_heuristic_with_one_warning(tmp_path, monkeypatch):
    monkeypatch.setenv(tuning.CACHE_ENV, str(tmp_path / "tune.json"))
    conv._WARNED.clear()
    x, w = _tensors()
    with pytest.warns(RuntimeWarning, match="not tuned: no GPU"):
        out = kernels.conv2d(x, w, padding=1, config="tune")
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*not tuned")
        kernels.conv2d(x, w, padding=1, config="tune")  # said once only
    torch.testing.assert_close(out.double(), F.conv2d(x.double(), w.double(), padding=1), rtol=1e-4, atol=1e-5)
    choice = kernels.resolve_conv2d(x, w, None, GEOM, config="tune")
    assert choice.config_from == conv.NOT_TUNED
    assert not (tmp_path / "tune.json").exists()


def test_configs_by_name_and_object_and_clear_errors():
    x, w = _tensors()
    for algorithm in kernels.CONV2D_ALGORITHMS:
        names = [c.name for c in kernels.conv_configs(algorithm, torch.float16)]
        assert names and len(names) == len(set(names)), algorithm
    cfg = kernels.conv_configs("direct")[1]
    by_obj = kernels.conv2d(x, w, padding=1, algorithm="direct", config=cfg)
    by_name = kernels.conv2d(x, w, padding=1, algorithm="direct", config=cfg.name)
    assert torch.equal(by_obj, by_name)
    with pytest.raises(ValueError, match="depthwise"):
        kernels.conv2d(x, w, padding=1, algorithm="direct", config=kernels.conv.direct.DEPTHWISE_CONFIGS[0])
    with pytest.raises(ValueError, match="not a GemmConfig"):
        kernels.conv2d(x, w, padding=1, algorithm="implicit_gemm", config=cfg)
    big = ConvGeometry(1, 2, 12, 12, 2, 11, 11, padding=(5, 5, 5, 5))
    xb, wb = _tensors(big)
    with pytest.raises(ValueError, match="tile 16 is too small"):
        kernels.conv2d(xb, wb, padding=5, algorithm="fft", config=kernels.conv_configs("fft")[0].name)
    with pytest.raises(ValueError, match="algorithm must be"):
        kernels.conv_configs("winograd")
    assert kernels.conv_configs("phase") == kernels.conv.transpose.CONFIGS


def test_static_pruner_compiles_the_candidates_launch_for_the_target():
    """The pruning of `convbench tune` without a GPU: each candidate's launch for this very problem
    is compiled for sm_90; the heuristic config passes, a tile whose pipeline needs more shared
    memory than sm_90 has is dropped with the reason.  (A 1x1: its GEMM loop is software-pipelined,
    so num_stages sets the shared memory; the stem's masked gather is not pipelined by Triton.)"""
    from convbench.kernels.conv import _gemm
    from convbench.suites.measure.tune import static_pruner

    geom = ConvGeometry(2, 128, 8, 8, 128, 1, 1)
    x, w = _tensors(geom, torch.float16)
    x = x.contiguous(memory_format=torch.channels_last)
    algo = conv.BY_NAME["implicit_gemm"]
    prune = static_pruner(algo, geom, x, w, None, "ieee", "sm_90")
    assert prune(algo.default_config(geom, torch.float16, True)) is None
    huge = _gemm.GemmConfig(128, 128, 64, 8, 8)  # 8 stages x 32 KB = 257 KB: over sm_90's 227 KB
    reason = prune(huge)
    assert reason is not None and "shared memory" in reason and "sm_90" in reason, reason
