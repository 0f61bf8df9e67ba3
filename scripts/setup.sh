#!/usr/bin/env bash
# Install everything stemkit needs on a fresh Debian/Ubuntu machine, into ./.venv.
#   bash scripts/setup.sh          # system packages + stemkit
#   bash scripts/setup.sh --test   # ... plus the test extras
# System packages: FluidSynth's library (rendering), a General MIDI soundfont, ffmpeg (musdb/museval).
set -euo pipefail
cd "$(dirname "$0")/.."

extras=""
[ "${1:-}" = "--test" ] && extras="[test]"

need=()
for pkg in libfluidsynth3 fluid-soundfont-gm ffmpeg; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  sudo_cmd=""
  [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -q --no-install-recommends "${need[@]}"
fi

python3 -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip
# torch first and pinned: on this project's machines 2.13.0 is a local CPU wheel; a bare "torch"
# requirement would otherwise pull a multi-GB CUDA build.
python -m pip install -q torch==2.13.0
python -m pip install -q -e ".${extras}"
echo "stemkit installed in .venv (activate with: . .venv/bin/activate)"
