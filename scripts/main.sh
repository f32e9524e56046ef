#!/usr/bin/env bash
# Set up (scripts/setup.sh) and run every study on a preset (default: quick); HTML in reports/.
source "$(dirname "$0")/setup.sh"
hpstudy report --preset "${PRESET:-quick}" "$@"
