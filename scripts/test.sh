#!/usr/bin/env bash
# Set up (scripts/setup.sh) and run the test suite. Real-data tests need HPSTUDY_DATA.
source "$(dirname "$0")/setup.sh"
python -m pytest "$@"
