#!/usr/bin/env bash
# Set up (scripts/setup.sh) and run every study on a preset (default: quick); HTML in reports/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
if [ -z "${HPSTUDY_DATA:-}" ] && [ -d ../shared/data/cifar-100-python ]; then
  export HPSTUDY_DATA="$(cd ../shared/data && pwd)"
fi
hpstudy report --preset "${PRESET:-quick}" "$@"
