#!/usr/bin/env bash
# Set up (scripts/setup.sh) and run the test suite. Real-data tests need HPSTUDY_DATA.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
if [ -z "${HPSTUDY_DATA:-}" ] && [ -d ../shared/data/cifar-100-python ]; then
  export HPSTUDY_DATA="$(cd ../shared/data && pwd)"
fi
echo "HPSTUDY_DATA=${HPSTUDY_DATA:-<unset: real-data tests are skipped>}"
python -m pytest "$@"
