//! The GraphiQL page served on `GET /graphql`.
//!
//! Its scripts are the console's vendored copies (`console/vendor/graphiql/`, embedded in
//! the binary and served under [`ASSETS_PATH`]), so GraphiQL works on a network without
//! internet access; nothing comes from a CDN. Each file is pinned by its sha384
//! (`integrity`). When something cannot load, the page says what is missing instead of
//! rendering blank. A token given as `#token=…` in the URL is put into the Authorization
//! header (the fragment never reaches the server or its logs).

/// Where the files are served (by the console's file handler).
pub const ASSETS_PATH: &str = "/console/vendor/graphiql";

/// The files, and the sha384 of each (`openssl dgst -sha384 -binary FILE | base64` of the
/// file from `npm pack react@18.3.1 react-dom@18.3.1 graphiql@3.8.3`): the browser refuses
/// a script or stylesheet that differs. A console test checks them against the embedded
/// copies.
pub const ASSETS: [(&str, &str); 4] = [
    (
        "react.production.min.js",
        "sha384-DGyLxAyjq0f9SPpVevD6IgztCFlnMF6oW/XQGmfe+IsZ8TqEiDrcHkMLKI6fiB/Z",
    ),
    (
        "react-dom.production.min.js",
        "sha384-gTGxhz21lVGYNMcdJOyq01Edg0jhn/c22nsx0kyqP0TxaV5WVdsSH1fSDUf5YJj1",
    ),
    (
        "graphiql.min.js",
        "sha384-HbRVEFG0JGJZeAHCJ9Xm2+tpknBQ7QZmNlO/DgZtkZ0aJSypT96YYGRNod99l9Ie",
    ),
    (
        "graphiql.min.css",
        "sha384-Mq3vbRBY71jfjQAt/DcjxUIYY33ksal4cgdRt9U/hNPvHBCaT2JfJ/PTRiPKf0aM",
    ),
];

/// Renders the page.
pub fn page() -> String {
    let url = |i: usize| format!("{ASSETS_PATH}/{}", ASSETS[i].0);
    let needed = ASSETS
        .iter()
        .map(|(file, _)| format!("<li><code>{ASSETS_PATH}/{file}</code></li>"))
        .collect::<String>();
    PAGE.replace("{{react}}", &url(0))
        .replace("{{react_dom}}", &url(1))
        .replace("{{graphiql_js}}", &url(2))
        .replace("{{graphiql_css}}", &url(3))
        .replace("{{react_sri}}", ASSETS[0].1)
        .replace("{{react_dom_sri}}", ASSETS[1].1)
        .replace("{{graphiql_js_sri}}", ASSETS[2].1)
        .replace("{{graphiql_css_sri}}", ASSETS[3].1)
        .replace("{{needed}}", &needed)
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
  <div id="problem" class="hidden">
    <h1>GraphiQL could not load</h1>
    <p id="failed"></p>
    <p>GraphiQL needs these files, served by this server:</p>
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
    fn the_page_loads_only_from_this_server() {
        let html = page();
        assert!(html.contains("/console/vendor/graphiql/graphiql.min.js"));
        assert!(!html.contains("unpkg.com"));
        assert!(!html.contains("{{"), "every placeholder is filled");
    }
}
