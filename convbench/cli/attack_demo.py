"""``convbench attack-demo``: a real-data check of the backward kernels.

Trains :func:`convbench.models.small_cnn` with torch on scikit-learn's digits (1,797 8x8 images,
shipped inside scikit-learn: no download), then attacks the held-out images with FGSM and PGD
twice with the same weights: once through convbench's kernels (``convbench.nn.convert``: every
conv, norm and pool forward *and* input gradient is a Triton kernel) and once through torch.
Clean, FGSM and PGD accuracy side by side, and how closely the two sets of adversarial examples
agree (the share of pixels whose gradient sign flipped between the two, and the largest
difference elsewhere, against the fp32 tolerance).
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import time
from pathlib import Path

from convbench.runtime import cuda_available, interpreter_requested

from .common import EXIT_OK, UsageError, csv_list

DEFAULT_EPS = ("0.1", "0.2", "0.3")


def register(sub) -> None:
    p = sub.add_parser(
        "attack-demo", help="train a small CNN on scikit-learn's digits; FGSM/PGD accuracy, ours vs torch",
        description="Train convbench.models.small_cnn on the digits data set that ships with scikit-learn "
                    "(CPU, seconds), then report clean, FGSM and PGD accuracy computed through convbench's "
                    "kernels next to the same numbers through torch, and how far the adversarial examples "
                    "of the two differ. Needs scikit-learn (pip install -r requirements-demo.txt).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--eps", type=csv_list, default=list(DEFAULT_EPS), metavar="VALUES",
                   help="L-infinity radii (pixels are in [0, 1])")
    p.add_argument("--steps", type=int, default=10, help="PGD steps (step size eps/4, random start)")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--width", type=int, default=16, help="small_cnn width (channels of the first conv)")
    p.add_argument("--limit", type=int, default=None, help="attack only the first N test images")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=None, help="also write results.md and results.json here")
    p.set_defaults(func=run)


def _floats(values, name: str) -> list[float]:
    try:
        out = [float(v) for v in values]
    except ValueError:
        raise UsageError(f"--{name} must be numbers, got {values!r}") from None
    if any(not v >= 0 for v in out):
        raise UsageError(f"--{name} must be >= 0, got {values!r}")
    return out


def load_digits(seed: int):
    """(x_train, y_train, x_test, y_test) as tensors: 8x8 images scaled to [0, 1], a stratified
    3:1 split."""
    try:
        from sklearn.datasets import load_digits as sk_load  # the optional demo extra
        from sklearn.model_selection import train_test_split
    except ImportError:
        raise UsageError("attack-demo needs scikit-learn: pip install -r requirements-demo.txt "
                         "(or pip install 'convbench[demo]')") from None
    import torch  # lazily: every command imports this module to register it

    data = sk_load()
    x = torch.tensor(data.images / 16.0, dtype=torch.float32).unsqueeze(1)
    y = torch.tensor(data.target, dtype=torch.int64)
    idx_train, idx_test = train_test_split(range(len(y)), test_size=0.25, stratify=data.target, random_state=seed)
    return x[idx_train], y[idx_train], x[idx_test], y[idx_test]


def train(x, y, width: int, epochs: int, seed: int):
    """small_cnn on torch (CPU): Adam, batch 64, cosine-free constant rate; returns the eval model."""
    import torch  # lazily: every command imports this module to register it

    from convbench import models  # lazily: the demo only

    torch.manual_seed(seed)
    model = models.small_cnn(1, 10, width, algorithm="torch")
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        model.train()
        order = torch.randperm(len(y), generator=gen)
        for i in range(0, len(y), 64):
            batch = order[i:i + 64]
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x[batch]), y[batch]).backward()
            opt.step()
    return model.eval()


def evaluate(model_torch, x, y, eps_values, steps: int, seed: int, device: str) -> dict:
    """Accuracy of both implementations, clean and under each attack, and their agreement."""
    import torch  # lazily: every command imports this module to register it

    from convbench import attacks, nn as cnn  # lazily: the demo only
    from convbench.suites.measure.accuracy import check_steps, tolerance  # lazily: the demo only

    theirs = model_torch.to(device)
    ours = cnn.convert(copy.deepcopy(theirs), "auto")
    x, y = x.to(device), y.to(device)

    def accuracy(model, inputs) -> float:
        with torch.no_grad():
            return float((model(inputs).argmax(1) == y).float().mean())

    rows = []
    for eps in eps_values:
        alpha = eps / 4
        start = torch.rand(x.shape, generator=torch.Generator().manual_seed(seed + 1)).to(device)
        row = {"eps": eps, "clean_ours": accuracy(ours, x), "clean_torch": accuracy(theirs, x)}
        for name, run, length in (
                ("fgsm", lambda m: attacks.fgsm(m, x, y, eps), 1),
                (f"pgd{steps}", lambda m: attacks.pgd(m, x, y, eps, alpha, steps, start=x + (2 * start - 1) * eps),
                 steps)):
            t0 = time.perf_counter()
            adv_ours = run(ours)
            t_ours = time.perf_counter() - t0
            t0 = time.perf_counter()
            adv_torch = run(theirs)
            t_torch = time.perf_counter() - t0
            agree = check_steps(adv_ours, adv_torch.double().cpu().numpy(), tolerance(torch.float32, length), name)
            diff = (adv_ours - adv_torch).abs()
            row.update({f"{name}_ours": accuracy(ours, adv_ours), f"{name}_torch": accuracy(theirs, adv_torch),
                        f"{name}_flipped": float((diff > agree.tol).float().mean()),
                        f"{name}_max_rel": agree.max_rel, f"{name}_tol": agree.tol, f"{name}_agree": agree.passed,
                        f"{name}_s_ours": t_ours, f"{name}_s_torch": t_torch})
        rows.append(row)
    return {"rows": rows, "images": int(len(y)), "pgd_steps": steps}


def markdown(result: dict, meta: dict) -> str:
    steps = result["pgd_steps"]
    lines = [
        "# Adversarial accuracy on scikit-learn's digits: convbench kernels vs torch",
        "",
        f"small_cnn(width={meta['width']}) trained with torch for {meta['epochs']} epochs "
        f"({meta['train_s']:.1f} s, {meta['train_images']} images); {result['images']} held-out images; "
        f"FGSM and PGD-{steps} (step eps/4, the same random start on both sides), L-infinity, cross entropy. "
        f"`ours`: every conv, batch-norm and pool layer (forward and input gradient) on convbench's Triton "
        f"kernels ({meta['kernels']}); `torch`: the same weights through torch.nn.",
        "",
        f"| eps | clean ours | clean torch | FGSM ours | FGSM torch | PGD-{steps} ours | PGD-{steps} torch "
        f"| FGSM pixels flipped | PGD pixels flipped | max rel diff elsewhere / tol |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        pgd = f"pgd{steps}"
        worst = max(r["fgsm_max_rel"] / r["fgsm_tol"], r[f"{pgd}_max_rel"] / r[f"{pgd}_tol"])
        lines.append(
            f"| {r['eps']:g} | {r['clean_ours']:.1%} | {r['clean_torch']:.1%} | {r['fgsm_ours']:.1%} | "
            f"{r['fgsm_torch']:.1%} | {r[f'{pgd}_ours']:.1%} | {r[f'{pgd}_torch']:.1%} | {r['fgsm_flipped']:.2%} | "
            f"{r[f'{pgd}_flipped']:.2%} | {worst:.3f} |")
    lines += ["", "A flipped pixel is one whose gradient sign differs between the two implementations (a tie at "
                  "rounding level, e.g. a ReLU at its kink): it then differs by a whole step. Everywhere else the "
                  "two adversarial images agree within the fp32 tolerance (ratio <= 1).", "",
              f"machine: {meta['machine']}; wall time {meta['wall_s']:.0f} s"]
    return "\n".join(lines) + "\n"


def run(args) -> int:
    import torch  # lazily: every command imports this module to register it

    eps_values = _floats(args.eps, "eps")
    if args.steps < 1 or args.epochs < 1 or args.width < 1:
        raise UsageError(f"--steps, --epochs and --width must be >= 1, got {args.steps}, {args.epochs}, {args.width}")
    if args.limit is not None and args.limit < 1:
        raise UsageError(f"--limit must be >= 1, got {args.limit}")
    t_start = time.perf_counter()
    x_train, y_train, x_test, y_test = load_digits(args.seed)
    t0 = time.perf_counter()
    model = train(x_train, y_train, args.width, args.epochs, args.seed)
    train_s = time.perf_counter() - t0
    if args.limit is not None:
        x_test, y_test = x_test[:args.limit], y_test[:args.limit]
    device = "cuda" if cuda_available() and not interpreter_requested() else "cpu"
    result = evaluate(model, x_test, y_test, eps_values, args.steps, args.seed, device)
    kernels = "compiled for the GPU" if device == "cuda" else "Triton interpreter on the CPU"
    meta = {"width": args.width, "epochs": args.epochs, "train_s": train_s, "train_images": int(len(y_train)),
            "kernels": kernels, "wall_s": time.perf_counter() - t_start,
            "machine": f"{platform.processor() or platform.machine()}, {torch.cuda.get_device_name() if device == 'cuda' else 'CPU'}, "
                       f"torch {torch.__version__}"}
    text = markdown(result, meta)
    print(text, end="")
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "results.md").write_text(text)
        (args.out / "results.json").write_text(json.dumps({**result, "meta": meta}, indent=2) + "\n")
        print(f"wrote {args.out / 'results.md'} and {args.out / 'results.json'}")
    return EXIT_OK
