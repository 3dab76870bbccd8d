#!/usr/bin/env bash
# Rebuild the example first screens in reports/examples/ with the project's own commands:
#   the default run's report.html, a compare page of two default runs, and the resnet50 suite at
#   --scale 0.125 on the numpy and torch backends (its winners heatmap has every reference algorithm).
# Needs .venv (scripts/setup.sh) and Chromium (Debian's chromium). Takes a few minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
out=reports/examples
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
browser=$(command -v chromium || command -v chromium-browser || command -v google-chrome)
shot() {  # shot PAGE PNG: the first 1400 x 900 of PAGE, copied alone into an empty folder
    local alone; alone=$(mktemp -d -p "$work")
    cp "$1" "$alone/"
    "$browser" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
        --disable-background-networking --disable-component-update --disable-sync --hide-scrollbars \
        --user-data-dir="$alone/profile" --window-size=1400,900 --virtual-time-budget=5000 \
        --screenshot="$2" "file://$(realpath "$alone/$(basename "$1")")" 2>/dev/null
}
mkdir -p "$out"
.venv/bin/convbench run --out "$work/a" --no-history -q || true
.venv/bin/convbench run --out "$work/b" --no-history -q || true
.venv/bin/convbench compare "$work/a" "$work/b" --format html --out "$work/compare.html" || true
.venv/bin/convbench run --suite resnet50 --scale 0.125 --backends numpy,torch --out "$work/r50" --no-history -q || true
shot "$work/a/report.html" "$out/report-first-screen.png"
shot "$work/compare.html" "$out/compare-first-screen.png"
shot "$work/r50/report.html" "$out/resnet50-scale0.125-first-screen.png"
cp "$work/a/report.html" "$out/quick-report.html"
cp "$work/compare.html" "$out/quick-compare.html"
cp "$work/r50/winners-resnet50.png" "$out/resnet50-scale0.125-winners.png"
cp "$work/r50/report.html" "$out/resnet50-scale0.125-report.html"
echo "wrote $out/"
ls -la "$out"
