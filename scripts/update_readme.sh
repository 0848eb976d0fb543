#!/usr/bin/env bash
# Regenerates the README's configuration reference (between the config-reference markers) from the key
# table: scripts/update_readme.sh [path/to/kiln]. tests/readme_test.sh fails when the two disagree.
set -euo pipefail
cd "$(dirname "$0")/.."
kiln=${1:-build/kiln}
ref=$(mktemp)
"$kiln" config --reference > "$ref"
python3 - "$ref" <<'PY'
import sys
ref = open(sys.argv[1]).read()
text = open("README.md").read()
begin, end = "<!-- config-reference:begin -->\n", "<!-- config-reference:end -->"
a, b = text.index(begin) + len(begin), text.index(end)
open("README.md", "w").write(text[:a] + ref + text[b:])
PY
rm -f "$ref"
echo "README.md: configuration reference updated"
