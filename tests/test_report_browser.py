"""``report.html`` and the compare page in a real browser: headless Chromium renders each page copied
alone into an empty folder; the test fails on any console message (the pages log nothing, so a
message is an error or a warning), a broken image or a missing section, and keeps a 1400 x 900
screenshot of the first screen next to the test output (``CONVBENCH_TEST_ARTIFACTS``, default
``.test-artifacts/`` in the repository).

Skipped with the reason where no Chromium is installed (``scripts/test.sh`` installs Debian's
``chromium`` where the machine allows it).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from convbench import cli

ROOT = Path(__file__).resolve().parent.parent
BROWSER = next((shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None)
pytestmark = pytest.mark.skipif(BROWSER is None, reason="no Chromium on this machine (apt-get install chromium)")

FAST = ["--min-samples", "3", "--max-time", "0.02", "--threads", "1", "--no-peaks", "--rounds", "2",
        "--processes", "1", "--no-history", "-q"]
#: what the checking script writes into the DOM once the page has loaded
PROBE = """<script>
window.addEventListener("load", function () {
  var broken = Array.prototype.filter.call(document.images, function (i) {
    return !i.complete || i.naturalWidth === 0; }).map(function (i) { return i.alt || i.src.slice(0, 40); });
  var ids = Array.prototype.map.call(document.querySelectorAll("section[id]"), function (s) { return s.id; });
  var th = document.querySelector("table.sortable th"), sorted = false;
  if (th) { th.click(); sorted = th.classList.contains("sorted-asc"); }
  var pre = document.createElement("pre");
  pre.id = "convbench-probe";
  pre.textContent = JSON.stringify({images: document.images.length, broken: broken, sections: ids,
                                    sorted: sorted, width: document.documentElement.scrollWidth});
  document.body.appendChild(pre);
});
</script>"""


def artifacts() -> Path:
    out = Path(os.environ.get("CONVBENCH_TEST_ARTIFACTS", ROOT / ".test-artifacts"))
    out.mkdir(parents=True, exist_ok=True)
    return out


def chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--hide-scrollbars", f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0",
             "--window-size=1400,900", "--virtual-time-budget=5000"]
    return subprocess.run([BROWSER, *flags, *args], capture_output=True, text=True, timeout=120)


def render(page: Path, tmp_path: Path, shot_name: str) -> dict:
    """Copy ``page`` alone into an empty folder; screenshot it; load a probed copy and read the probe."""
    alone = tmp_path / "alone"
    alone.mkdir()
    target = alone / page.name
    shutil.copy(page, target)
    shot = artifacts() / shot_name
    done = chromium(tmp_path, f"--screenshot={shot}", target.as_uri())
    assert shot.exists() and shot.stat().st_size > 10_000, done.stderr[-2000:]
    probed = alone / "probed.html"
    probed.write_text(target.read_text().replace("<head>", "<head>" + PROBE, 1))
    dom = chromium(tmp_path, "--dump-dom", probed.as_uri())
    console = [line for line in (done.stderr + dom.stderr).splitlines() if ":CONSOLE" in line]
    assert not console, "console messages:\n" + "\n".join(console)
    match = re.search(r'<pre id="convbench-probe">(.*?)</pre>', dom.stdout, re.S)
    assert match, f"the page did not finish loading: {dom.stderr[-2000:]}"
    return json.loads(match.group(1).replace("&quot;", '"').replace("&amp;", "&"))


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("browser") / "run"
    status = cli.main(["run", "--suite", "quick", "--backends", "numpy,torch,triton-interpret", "--ops", "conv2d",
                       "--shapes", "1x1", "--algorithms", "direct,implicit_gemm", "--dtypes", "fp32,fp64",
                       "--out", str(out), *FAST])
    assert status in (0, 1)
    return out


def test_report_renders_alone_in_chromium(tiny_run, tmp_path):
    plots = sorted(p.name for p in tiny_run.glob("*.png"))
    assert "winners-quick.png" in plots
    probe = render(tiny_run / "report.html", tmp_path, "report-first-screen.png")
    assert probe["images"] == len(plots) and probe["broken"] == [], probe
    assert probe["sections"][:3] == ["headline", "plots", "details"], probe
    assert probe["sorted"], "clicking a header did not sort"
    assert probe["width"] <= 1400, f"the page scrolls sideways ({probe['width']} px wide)"


def test_compare_page_renders_alone_in_chromium(tiny_run, tmp_path):
    out = tmp_path / "compare.html"
    assert cli.main(["compare", str(tiny_run), str(tiny_run), "--format", "html", "--out", str(out)]) == 0
    probe = render(out, tmp_path, "compare-first-screen.png")
    assert probe["images"] == 1 and probe["broken"] == [], probe
    assert probe["sections"] == ["headline", "regressions", "plots", "details"], probe
    assert probe["width"] <= 1400, f"the page scrolls sideways ({probe['width']} px wide)"
