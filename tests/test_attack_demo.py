"""``convbench attack-demo`` end to end at a tiny size (scikit-learn's digits, no download)."""

from __future__ import annotations

import json

import pytest

from convbench.cli import main

pytest.importorskip("sklearn", reason="the attack demo needs scikit-learn (requirements-demo.txt)")


def test_attack_demo_trains_attacks_and_reports(tmp_path, capsys):
    out = tmp_path / "demo"
    argv = ["attack-demo", "--limit", "6", "--epochs", "3", "--steps", "2", "--eps", "0.1,0.3", "--width", "4",
            "--out", str(out)]
    assert main(argv) == 0
    result = json.loads((out / "results.json").read_text())
    assert result["images"] == 6 and [r["eps"] for r in result["rows"]] == [0.1, 0.3]
    for row in result["rows"]:
        for key in ("clean_ours", "clean_torch", "fgsm_ours", "fgsm_torch", "pgd2_ours", "pgd2_torch"):
            assert 0.0 <= row[key] <= 1.0, key
        assert row["clean_ours"] == row["clean_torch"]  # the same weights, forward error far below a margin
        assert row["fgsm_agree"] and row["pgd2_agree"], row  # adversarial examples agree but for flipped steps
    text = (out / "results.md").read_text()
    assert "| eps | clean ours | clean torch |" in text and "0.3" in text
    assert "Adversarial accuracy" in capsys.readouterr().out


def test_attack_demo_rejects_bad_arguments():
    assert main(["attack-demo", "--eps", "-0.1"]) == 2
    assert main(["attack-demo", "--steps", "0"]) == 2
