#!/usr/bin/env bash
# Renders the README's pictures from their sources in docs/ (graphviz's `dot`: apt-get install
# graphviz). The rendered files are committed; docs_tests checks that they match their sources.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v dot > /dev/null || { echo "graphviz's dot is needed: apt-get install graphviz" >&2; exit 1; }
dot -Tsvg docs/architecture.dot -o docs/architecture.svg
echo "docs/architecture.svg"
