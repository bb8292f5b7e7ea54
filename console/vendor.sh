#!/usr/bin/env bash
# Refreshes the console's (and GraphiQL's) JavaScript dependencies from the npm registry:
# the pinned versions below, their browser builds and their licences, into
# console/vendor/. Nothing here runs at build or run time; the files are committed, so
# `cargo build` and the server need no Node and no network. After a GraphiQL or React
# bump, update the sha384 pins in src/graphql/graphiql.rs (a unit test compares them).
set -euo pipefail
cd "$(dirname "$0")"
PREACT=10.27.2
HTM=3.1.1
GRAPHQL_WS=5.16.2
REACT=18.3.1
GRAPHIQL=3.8.3
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "preact@$PREACT" "htm@$HTM" "graphql-ws@$GRAPHQL_WS" \
  "react@$REACT" "react-dom@$REACT" "graphiql@$GRAPHIQL" >/dev/null)
for tgz in "$work"/*.tgz; do
  mkdir -p "${tgz%.tgz}" && tar xzf "$tgz" -C "${tgz%.tgz}"
done
rm -rf vendor
mkdir -p vendor/graphql-ws vendor/graphiql
cp "$work/preact-$PREACT/package/dist/preact.module.js" vendor/preact.module.js
cp "$work/preact-$PREACT/package/hooks/dist/hooks.module.js" vendor/hooks.module.js
cp "$work/htm-$HTM/package/dist/htm.module.js" vendor/htm.module.js
cp "$work/preact-$PREACT/package/LICENSE" vendor/LICENSE.preact
cp "$work/htm-$HTM/package/LICENSE" vendor/LICENSE.htm
# The client only: its ES modules import nothing but each other.
for file in client common utils; do
  cp "$work/graphql-ws-$GRAPHQL_WS/package/lib/$file.mjs" "vendor/graphql-ws/$file.mjs"
done
cp "$work/graphql-ws-$GRAPHQL_WS/package/LICENSE.md" vendor/graphql-ws/LICENSE.md
cp "$work/react-$REACT/package/umd/react.production.min.js" vendor/graphiql/
cp "$work/react-dom-$REACT/package/umd/react-dom.production.min.js" vendor/graphiql/
cp "$work/graphiql-$GRAPHIQL/package/graphiql.min.js" "$work/graphiql-$GRAPHIQL/package/graphiql.min.css" vendor/graphiql/
cp "$work/react-$REACT/package/LICENSE" vendor/graphiql/LICENSE.react
cp "$work/graphiql-$GRAPHIQL/package/LICENSE" vendor/graphiql/LICENSE.graphiql
# graphiql.min.js carries its dependencies (codemirror, graphql-js, …); their licence
# notices are the package's, kept in its bundle comments.
cat > vendor/VERSIONS <<VERSIONS
preact $PREACT (MIT) dist/preact.module.js, hooks/dist/hooks.module.js
htm $HTM (Apache-2.0) dist/htm.module.js
graphql-ws $GRAPHQL_WS (MIT) lib/client.mjs, lib/common.mjs, lib/utils.mjs -> graphql-ws/
react $REACT (MIT) umd/react.production.min.js -> graphiql/
react-dom $REACT (MIT) umd/react-dom.production.min.js -> graphiql/
graphiql $GRAPHIQL (MIT) graphiql.min.js, graphiql.min.css -> graphiql/
VERSIONS
(cd vendor && find . -type f \( -name '*.js' -o -name '*.mjs' -o -name '*.css' \) | sort | xargs sha256sum > SHA256SUMS)
