#!/usr/bin/env bash
# Install everything (CPU torch from the local wheel cache first) and run the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install --quiet "torch==2.13.0"
python3 -m pip install --quiet -e ".[test]"
python3 -m pytest tests -q -p no:cacheprovider "$@"
