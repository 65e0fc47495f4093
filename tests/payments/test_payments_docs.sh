#!/bin/bash
# Goal: docs/payments.md shows the payment state table exactly as the code has it.
# Method: the text between the markers equals `paycore docs payment-states`.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bin="${PAYCORE_BIN:-$here/../../build/paycore}"
doc="$here/../../docs/payments.md"
want=$("$bin" docs payment-states)
got=$(sed -n '/<!-- payment-states: begin -->/,/<!-- payment-states: end -->/p' "$doc" | sed '1d;$d')
if [ "$want" != "$got" ]; then
    echo "FAIL docs/payments.md's state table differs from 'paycore docs payment-states':"
    diff <(echo "$want") <(echo "$got") || true
    exit 1
fi
grep -q "payment_state_conflict" "$doc" || { echo "FAIL the conflict code is documented"; exit 1; }
echo "payment states documented: ok"
