#!/usr/bin/env bash
# Peak memory of `countersign audit export` for 10,000 and 100,000 events on SQLite.
# Flat memory means the export streams: the two figures should be about the same.
#
#   bench/audit-export.sh            # prints "events  format  max RSS (KiB)"
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet --bin countersign --example seed_audit
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
printf 'events\tformat\tmax RSS (KiB)\n'
for n in 10000 100000; do
  export DATABASE_URL="sqlite://$work/audit-$n.db?mode=rwc"
  export COUNTERSIGN_JWT_SECRET=benchmark-secret-0123456789abcdef0123
  target/release/examples/seed_audit "$n" >/dev/null
  for format in ndjson csv; do
    rss=$( { /usr/bin/time -f '%M' target/release/countersign audit export --format "$format" >/dev/null; } 2>&1 | tail -1)
    printf '%s\t%s\t%s\n' "$n" "$format" "$rss"
  done
done
