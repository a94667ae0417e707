#!/usr/bin/env bash
# The README's second quick-start command, verbatim (tests/test_readme.py checks they agree).
set -euo pipefail
pip install ".[test]" && pytest
