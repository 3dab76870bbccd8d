"""The layout: one ``convbench`` import name, every package declared, layers that import one way.

The import graph is read from the source (:mod:`_imports`), every import counted, those inside
functions too.  The checks are also run on small planted trees, so a test that stopped seeing
cycles or upward imports would fail here rather than pass forever.
"""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import _imports as I

ROOT = I.ROOT


def test_declared_packages_match_the_tree():
    declared = I.package_dirs()
    found = I.tree_packages()
    orphans = sorted(k[1:] for k in found if k.startswith("?"))
    assert not orphans, f"folders with Python files but no __init__.py (not installed): {orphans}"
    assert sorted(declared) == sorted(found), (
        "pyproject.toml [tool.setuptools] packages must list exactly the packages of the tree: "
        f"missing {sorted(set(found) - set(declared))}, stale {sorted(set(declared) - set(found))}")
    for name, folder in declared.items():
        assert folder == found[name], name
    assert all(name == "convbench" or name.startswith("convbench.") for name in declared)


def test_every_layer_is_installed_under_convbench():
    mapping = I.pyproject()["tool"]["setuptools"]["package-dir"]
    assert mapping == {"convbench": "convbench", "convbench.kernels": "kernels", "convbench.reference": "reference",
                       "convbench.suites": "suites", "convbench.reports": "reports"}
    assert I.pyproject()["project"]["scripts"]["convbench"] == "convbench.cli:main"


def test_no_import_cycles():
    edges = I.import_graph(I.module_files())
    assert len(edges) > 100  # the graph was read (a broken reader finds nothing and passes)
    assert I.cycles(edges) == []


def test_layers_import_one_way():
    edges = I.import_graph(I.module_files())
    bad = [f"{e.importer}:{e.line} imports {e.imported}" for e in I.upward(edges)]
    assert bad == [], "imports from a lower layer to a higher one (design notes, section 2):\n" + "\n".join(bad)
    # the layers the design names all take part
    importers = {e.importer.split(".")[1] for e in edges if "." in e.importer}
    assert {"kernels", "reference", "suites", "reports", "cli"} <= importers


def _tree(tmp_path: Path, files: dict[str, str]) -> dict[str, Path]:
    out = {}
    for name, text in files.items():
        parts = name.split(".")
        is_pkg = text.startswith("#pkg")
        path = tmp_path.joinpath(*parts, "__init__.py") if is_pkg else tmp_path.joinpath(*parts[:-1], parts[-1] + ".py")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
        out[name] = path
    return out


def test_checks_fire_on_a_planted_cycle_and_an_upward_import(tmp_path):
    files = _tree(tmp_path, {
        "convbench": "#pkg\n",
        "convbench.suites": "#pkg\n",
        "convbench.suites.measure": "#pkg\n",
        "convbench.suites.measure.runner": "from .rounds import run_rounds\n",
        # the cycle hides inside a function, as rounds <-> runner once did
        "convbench.suites.measure.rounds": "def serve():\n    from .runner import InputCache\n",
        "convbench.suites.plan": "#pkg\n",
        "convbench.suites.plan.cells": "def f():\n    from convbench.reports import build\n",
        "convbench.reports": "#pkg\n",
        "convbench.reports.build": "from convbench.suites.measure import runner\n",
        "convbench.kernels": "#pkg\nfrom . import conv\n",
        "convbench.kernels.conv": "from . import helper\nimport convbench.reference.geometry as g\n",
        "convbench.kernels.helper": "x = 1\n",
        "convbench.reference": "#pkg\n",
        "convbench.reference.geometry": "from convbench.kernels import conv\n",
    })
    edges = I.import_graph(files)
    assert sorted(I.cycles(edges)) == [["convbench.kernels.conv", "convbench.reference.geometry"],
                                       ["convbench.suites.measure.rounds", "convbench.suites.measure.runner"]]
    assert any(e.deferred for e in edges if e.importer.endswith("rounds"))
    up = {(e.importer, e.imported) for e in I.upward(edges)}
    assert up == {("convbench.suites.plan.cells", "convbench.reports.build"),   # suites -> reports
                  ("convbench.reference.geometry", "convbench.kernels.conv")}   # reference -> kernels


def test_python_dash_m_convbench_is_the_cli():
    proc = subprocess.run([sys.executable, "-m", "convbench", "--help"], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert "usage: convbench" in proc.stdout and "calibrate" in proc.stdout
    bad = subprocess.run([sys.executable, "-m", "convbench", "run", "--rounds", "0"], capture_output=True,
                         text=True, cwd=ROOT)
    assert bad.returncode == 2 and "--rounds must be >= 1" in bad.stderr


@pytest.mark.slow
def test_non_editable_install_holds_only_convbench_and_runs(tmp_path):
    """``pip install --no-deps --target DIR .`` puts nothing but convbench at the top of DIR; from a
    folder outside the checkout, with DIR on PYTHONPATH, a run works and loads as a DataFrame."""
    target = tmp_path / "site"
    pip = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                          "--disable-pip-version-check", "--target", str(target), str(ROOT)],
                         capture_output=True, text=True, timeout=300)
    assert pip.returncode == 0, pip.stderr[-3000:]
    tops = sorted(p.name for p in target.iterdir() if not p.name.endswith(".dist-info"))
    assert tops == ["bin", "convbench"] or tops == ["convbench"], tops
    assert (target / "convbench" / "suites" / "plan" / "conv_shapes.csv").exists()  # package data
    assert not (target / "convbench" / "reports" / "static").exists()  # committed results stay out
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = str(target)
    run = subprocess.run([sys.executable, "-m", "convbench", "run", "--suite", "quick", "--backends", "numpy",
                          "--rounds", "1", "--max-time", "0.02", "--min-samples", "3", "--no-peaks", "--no-plots",
                          "-q", "--out", "r"], cwd=work, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    check = ("import convbench, sys; df = convbench.load('r'); "
             "assert convbench.__file__.startswith(sys.argv[1]), convbench.__file__; "
             "import convbench.suites.measure.records as R; assert R.__file__.startswith(sys.argv[1]); "
             "print(len(df), int(df.samples_ms.map(len).gt(0).sum()), df.attrs['env']['run']['rounds'])")
    out = subprocess.run([sys.executable, "-c", check, str(target)], cwd=work, env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    rows, timed, rounds = map(int, out.stdout.split())
    assert rows > 10 and timed > 0 and rounds == 1


def _unexplained_deferred_imports(files) -> list[str]:
    """Function-level imports with no comment on their line, in their import block, or on the
    line just above it."""
    import ast

    out = []
    for name, path in files.items():
        src = path.read_text().splitlines()
        for node, deferred in I._imports(ast.parse(path.read_text())):
            if not deferred:
                continue
            first = node.lineno - 1
            while first > 0 and src[first - 1].strip().startswith(("import ", "from ")):
                first -= 1  # the top of this run of imports
            block = src[max(first - 1, 0):node.end_lineno]
            if not any("#" in line for line in block):
                out.append(f"{name}:{node.lineno}: {src[node.lineno - 1].strip()}")
    return out


def test_function_level_imports_say_why():
    files = I.module_files()
    assert _unexplained_deferred_imports(files) == []


def test_function_level_import_check_fires(tmp_path):
    files = _tree(tmp_path, {
        "convbench": "#pkg\n",
        "convbench.a": "def f():\n    import torch\n\n\ndef g():\n    import scipy  # slow import\n",
        "convbench.b": "def h():\n    # TRITON_INTERPRET first\n    from convbench import kernels\n    import numpy\n",
    })
    assert _unexplained_deferred_imports(files) == ["convbench.a:2: import torch"]


def test_the_root_imports_nothing_and_reaches_every_layer():
    code = ("import sys, convbench; "
            "assert not [m for m in sys.modules if m.startswith('convbench.')], sorted(sys.modules); "
            "assert 'torch' not in sys.modules; "
            "from importlib.metadata import version; "
            "print(convbench.__version__, version('convbench'), convbench.reference.conv2d.__module__, "
            "convbench.reports.__name__)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    version, installed, ref, reports = proc.stdout.split()
    assert version == installed  # pyproject takes the version from convbench.__version__
    assert ref == "convbench.reference.conv" and reports == "convbench.reports"
    import convbench

    with pytest.raises(AttributeError, match="no attribute 'kernelz'"):
        convbench.kernelz  # noqa: B018


def test_interpreter_mode_cannot_change_after_import(monkeypatch):
    """TRITON_INTERPRET is decided when convbench.kernels is imported; flipping it later is an
    error that says so (not kernels silently switching their interpreter-only paths)."""
    import torch

    from convbench import kernels
    from convbench.kernels import _common

    mode = _common.INTERPRETER_MODE
    monkeypatch.setenv("TRITON_INTERPRET", "0" if mode else "1")
    with pytest.raises(RuntimeError, match="TRITON_INTERPRET changed after convbench.kernels was imported"):
        kernels.conv2d(torch.zeros(1, 1, 3, 3), torch.zeros(1, 1, 1, 1))
    monkeypatch.undo()
    assert _common.interpreting() == mode
