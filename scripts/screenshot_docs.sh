#!/usr/bin/env bash
# Build the docs site and screenshot the home page and the W1 workflow page with headless
# Chromium, to check that the pages render with their images.
#
#   bash scripts/screenshot_docs.sh [OUTPUT_DIR]   # default: /tmp/visionkit-screenshots
#
# Needs Chromium (Debian: apt-get install chromium). Writes home.png and workflow-w1.png.
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
out="$(realpath -m "${1:-${TMPDIR:-/tmp}/visionkit-screenshots}")"
site="$(mktemp -d)"
profile="$(mktemp -d)"
trap 'rm -rf "$site" "$profile"' EXIT

browser="$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)"
if [[ -z "$browser" ]]; then
  echo "error: Chromium not found: install it (apt-get install chromium)" >&2
  exit 1
fi

(cd "$repo" && NO_MKDOCS_2_WARNING=1 python -m mkdocs build --strict --quiet -d "$site")
mkdir -p "$out"

shoot() {  # shoot PAGE_PATH IMAGE_NAME HEIGHT
  "$browser" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync \
    --user-data-dir="$profile" --hide-scrollbars --window-size=1280,"$3" \
    --screenshot="$out/$2" "file://$site/$1" >/dev/null 2>&1
  test -s "$out/$2" || { echo "error: no screenshot of $1" >&2; exit 1; }
  echo "$out/$2"
}

shoot index.html home.png 1400
shoot workflows/w1/index.html workflow-w1.png 3800  # down to the output and its plot
