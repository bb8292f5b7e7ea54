#!/usr/bin/env bash
# Refreshes the console's JavaScript dependencies from the npm registry: the pinned
# versions below, their ES module builds and their licences, into console/vendor/.
# Nothing here runs at build or run time; the files are committed, so `cargo build` and
# the server need no Node and no network.
set -euo pipefail
cd "$(dirname "$0")"
PREACT=10.27.2
HTM=3.1.1
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "preact@$PREACT" "htm@$HTM" >/dev/null)
for tgz in "$work"/*.tgz; do
  mkdir -p "${tgz%.tgz}" && tar xzf "$tgz" -C "${tgz%.tgz}"
done
mkdir -p vendor
cp "$work/preact-$PREACT/package/dist/preact.module.js" vendor/preact.module.js
cp "$work/preact-$PREACT/package/hooks/dist/hooks.module.js" vendor/hooks.module.js
cp "$work/htm-$HTM/package/dist/htm.module.js" vendor/htm.module.js
cp "$work/preact-$PREACT/package/LICENSE" vendor/LICENSE.preact
cp "$work/htm-$HTM/package/LICENSE" vendor/LICENSE.htm
cat > vendor/VERSIONS <<VERSIONS
preact $PREACT (MIT) dist/preact.module.js, hooks/dist/hooks.module.js
htm $HTM (Apache-2.0) dist/htm.module.js
VERSIONS
sha256sum vendor/*.js > vendor/SHA256SUMS
