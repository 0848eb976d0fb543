#!/usr/bin/env bash
# The README's configuration reference is exactly what `kiln config --reference` prints from the key
# table (regenerate with scripts/update_readme.sh), and the README shows both set-up commands.
set -euo pipefail
readme="$KILN_SOURCE_DIR/README.md"
want=$(mktemp); got=$(mktemp)
trap 'rm -f "$want" "$got"' EXIT
"$KILN_BIN" config --reference > "$want"
awk '/<!-- config-reference:end -->/{f=0} f{print} /<!-- config-reference:begin -->/{f=1}' "$readme" > "$got"
if ! diff -u "$got" "$want"; then
  echo "README.md's configuration reference is stale: run scripts/update_readme.sh" >&2
  exit 1
fi
grep -q 'scripts/test.sh' "$readme" && grep -q 'scripts/demo.sh' "$readme"
echo "README reference matches the key table ($(grep -c '^| `' "$want") keys)"
