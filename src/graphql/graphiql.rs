//! The GraphiQL page served on `GET /graphql`.
//!
//! Scripts load from a CDN by default. `COUNTERSIGN_GRAPHIQL_ASSETS` may name a directory
//! holding the same four files for networks without internet access; they are served under
//! [`ASSETS_PATH`]. When something cannot load, the page says what is missing instead of
//! rendering blank. A token given as `#token=…` in the URL is put into the Authorization
//! header (the fragment never reaches the server or its logs).

use std::path::Path;

/// Where a local copy of the assets is served.
pub const ASSETS_PATH: &str = "/graphiql/assets";

/// The files a local copy must hold, and where each comes from on the CDN.
pub const ASSET_FILES: [(&str, &str); 4] = [
    (
        "react.production.min.js",
        "https://unpkg.com/react@18.3.1/umd/react.production.min.js",
    ),
    (
        "react-dom.production.min.js",
        "https://unpkg.com/react-dom@18.3.1/umd/react-dom.production.min.js",
    ),
    (
        "graphiql.min.js",
        "https://unpkg.com/graphiql@3.8.3/graphiql.min.js",
    ),
    (
        "graphiql.min.css",
        "https://unpkg.com/graphiql@3.8.3/graphiql.min.css",
    ),
];

/// Subresource integrity of each file in [`ASSET_FILES`], in the same order: the browser
/// refuses a script or stylesheet that differs, from the CDN or from a local copy alike.
/// The hashes are of the files in the npm packages (`npm pack react@18.3.1
/// react-dom@18.3.1 graphiql@3.8.3`, `openssl dgst -sha384 -binary FILE | base64`), which
/// unpkg serves unchanged.
pub const ASSET_INTEGRITY: [&str; 4] = [
    "sha384-DGyLxAyjq0f9SPpVevD6IgztCFlnMF6oW/XQGmfe+IsZ8TqEiDrcHkMLKI6fiB/Z",
    "sha384-gTGxhz21lVGYNMcdJOyq01Edg0jhn/c22nsx0kyqP0TxaV5WVdsSH1fSDUf5YJj1",
    "sha384-HbRVEFG0JGJZeAHCJ9Xm2+tpknBQ7QZmNlO/DgZtkZ0aJSypT96YYGRNod99l9Ie",
    "sha384-Mq3vbRBY71jfjQAt/DcjxUIYY33ksal4cgdRt9U/hNPvHBCaT2JfJ/PTRiPKf0aM",
];

/// Renders the page. `local_assets` is the configured directory, if any.
pub fn page(local_assets: Option<&Path>) -> String {
    let (urls, source, missing): (Vec<String>, String, Vec<&str>) = match local_assets {
        None => (
            ASSET_FILES.iter().map(|(_, cdn)| (*cdn).to_owned()).collect(),
            "unpkg.com (set COUNTERSIGN_GRAPHIQL_ASSETS to a local directory without internet access)"
                .to_owned(),
            Vec::new(),
        ),
        Some(dir) => (
            ASSET_FILES
                .iter()
                .map(|(file, _)| format!("{ASSETS_PATH}/{file}"))
                .collect(),
            format!("COUNTERSIGN_GRAPHIQL_ASSETS={}", dir.display()),
            ASSET_FILES
                .iter()
                .filter(|(file, _)| !dir.join(file).is_file())
                .map(|(file, _)| *file)
                .collect(),
        ),
    };
    let missing_html = if missing.is_empty() {
        String::new()
    } else {
        format!(
            "<p><strong>Missing from the local GraphiQL assets:</strong> {}</p>",
            html_escape(&missing.join(", "))
        )
    };
    let needed = ASSET_FILES
        .iter()
        .map(|(file, cdn)| format!("<li><code>{file}</code> from <code>{cdn}</code></li>"))
        .collect::<String>();

    PAGE.replace("{{react}}", &urls[0])
        .replace("{{react_dom}}", &urls[1])
        .replace("{{graphiql_js}}", &urls[2])
        .replace("{{graphiql_css}}", &urls[3])
        .replace("{{react_sri}}", ASSET_INTEGRITY[0])
        .replace("{{react_dom_sri}}", ASSET_INTEGRITY[1])
        .replace("{{graphiql_js_sri}}", ASSET_INTEGRITY[2])
        .replace("{{graphiql_css_sri}}", ASSET_INTEGRITY[3])
        .replace("{{source}}", &html_escape(&source))
        .replace("{{missing}}", &missing_html)
        .replace("{{needed}}", &needed)
        .replace(
            "{{missing_class}}",
            if missing.is_empty() { "hidden" } else { "" },
        )
}

fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

const PAGE: &str = r##"<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>Countersign GraphiQL</title>
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <link rel="stylesheet" href="{{graphiql_css}}" integrity="{{graphiql_css_sri}}" crossorigin="anonymous" onerror="countersignMissing(this.href)">
  <style>
    html, body { height: 100%; margin: 0; font-family: system-ui, sans-serif; }
    #graphiql { height: 100vh; }
    #problem { max-width: 46rem; margin: 3rem auto; padding: 1.5rem; border: 1px solid #c33; border-radius: 6px; }
    #hint { padding: .4rem 1rem; background: #fff7d6; font-size: .9rem; }
    .hidden { display: none; }
  </style>
  <script>
    window.countersignFailed = [];
    function countersignMissing(url) { window.countersignFailed.push(url); }
  </script>
</head>
<body>
  <div id="problem" class="{{missing_class}}">
    <h1>GraphiQL could not load</h1>
    {{missing}}
    <p id="failed"></p>
    <p>Scripts are loaded from {{source}}. GraphiQL needs these files:</p>
    <ul>{{needed}}</ul>
    <p>The API itself works without them: <code>POST /graphql</code> with
       <code>Authorization: Bearer &lt;token&gt;</code>.</p>
  </div>
  <div id="hint" class="hidden">No token yet: open this page as <code>/graphql#token=&lt;token&gt;</code>
    (tokens are printed by <code>countersign serve</code> and <code>countersign token</code>) or add
    <code>{"Authorization": "Bearer &lt;token&gt;"}</code> under Headers.</div>
  <div id="graphiql"></div>
  <script src="{{react}}" integrity="{{react_sri}}" crossorigin="anonymous" onerror="countersignMissing(this.src)"></script>
  <script src="{{react_dom}}" integrity="{{react_dom_sri}}" crossorigin="anonymous" onerror="countersignMissing(this.src)"></script>
  <script src="{{graphiql_js}}" integrity="{{graphiql_js_sri}}" crossorigin="anonymous" onerror="countersignMissing(this.src)"></script>
  <script>
    (function () {
      var problem = document.getElementById('problem');
      if (typeof React === 'undefined' || typeof ReactDOM === 'undefined' || typeof GraphiQL === 'undefined') {
        var failed = window.countersignFailed.length ? window.countersignFailed : ['(scripts loaded but did not define React, ReactDOM and GraphiQL)'];
        document.getElementById('failed').textContent = 'Could not load: ' + failed.join(', ');
        problem.classList.remove('hidden');
        return;
      }
      problem.classList.add('hidden');
      var token = new URLSearchParams(window.location.hash.slice(1)).get('token');
      if (token) { history.replaceState(null, '', window.location.pathname + window.location.search); }
      var wsScheme = window.location.protocol === 'https:' ? 'wss://' : 'ws://';
      var fetcher = GraphiQL.createFetcher({
        url: window.location.pathname,
        subscriptionUrl: wsScheme + window.location.host + window.location.pathname.replace(/\/$/, '') + '/ws',
      });
      // A bearer token must not outlive the tab: headers are never persisted, and any an
      // older version of this page left in localStorage are removed.
      try { localStorage.removeItem('graphiql:headers'); } catch (e) {}
      var props = { fetcher: fetcher, shouldPersistHeaders: false, defaultEditorToolsVisibility: 'headers' };
      if (token) {
        props.headers = JSON.stringify({ Authorization: 'Bearer ' + token }, null, 2);
      } else {
        document.getElementById('hint').classList.remove('hidden');
      }
      ReactDOM.createRoot(document.getElementById('graphiql')).render(React.createElement(GraphiQL, props));
    })();
  </script>
  <noscript>GraphiQL needs JavaScript. The API answers <code>POST /graphql</code> without it.</noscript>
</body>
</html>
"##;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_page_loads_from_the_cdn() {
        let html = page(None);
        assert!(html.contains("https://unpkg.com/graphiql@3.8.3/graphiql.min.js"));
        assert!(!html.contains("{{"), "every placeholder is filled");
    }

    #[test]
    fn a_local_copy_that_misses_files_says_which() {
        let dir = std::env::temp_dir().join(format!("cs-graphiql-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("graphiql.min.js"), "x").unwrap();
        let html = page(Some(&dir));
        assert!(html.contains("/graphiql/assets/graphiql.min.js"));
        assert!(
            html.contains("react.production.min.js, react-dom.production.min.js, graphiql.min.css")
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}
