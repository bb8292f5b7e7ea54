//! The GraphiQL page served on `GET /graphql`.
//!
//! Its scripts are the console's vendored copies (`console/vendor/graphiql/`, embedded in
//! the binary and served under [`ASSETS_PATH`]), so GraphiQL works on a network without
//! internet access; nothing comes from a CDN. Each file is pinned by its sha384
//! (`integrity`). When something cannot load, the page says what is missing instead of
//! rendering blank. The page is served by the console (`console::graphiql`), with its
//! security headers.
//!
//! A token never travels in the page's URL (a URL lands in the browser's history on disk):
//! the console opens the page and hands its token over by `postMessage`, and GraphiQL keeps
//! its tabs and history in memory (`console/graphiql-page.js`).

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

/// The page's own style and script: files (served by the console's file handler), not
/// inline, so the page needs no `unsafe-inline` in its Content-Security-Policy.
const PAGE_CSS: &str = "/console/graphiql-page.css";
const PAGE_JS: &str = "/console/graphiql-page.js";

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
        .replace("{{page_css}}", PAGE_CSS)
        .replace("{{page_js}}", PAGE_JS)
        .replace("{{needed}}", &needed)
}

const PAGE: &str = r##"<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>Countersign GraphiQL</title>
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <link rel="icon" href="data:,">
  <link rel="stylesheet" href="{{graphiql_css}}" integrity="{{graphiql_css_sri}}" crossorigin="anonymous">
  <link rel="stylesheet" href="{{page_css}}">
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
  <div id="hint" class="hidden">No token yet: open GraphiQL from the ops console (<code>/</code>, the
    GraphiQL link once signed in), which hands it your session, or add
    <code>{"Authorization": "Bearer &lt;token&gt;"}</code> under Headers (tokens are printed by
    <code>countersign serve</code> and <code>countersign token</code>).</div>
  <div id="graphiql"></div>
  <script src="{{react}}" integrity="{{react_sri}}" crossorigin="anonymous" data-defines="React"></script>
  <script src="{{react_dom}}" integrity="{{react_dom_sri}}" crossorigin="anonymous" data-defines="ReactDOM"></script>
  <script src="{{graphiql_js}}" integrity="{{graphiql_js_sri}}" crossorigin="anonymous" data-defines="GraphiQL"></script>
  <script src="{{page_js}}"></script>
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
        // The console's Content-Security-Policy allows no inline script, style or handler.
        assert!(!html.contains("<script>") && !html.contains("<style"));
        assert!(!html.contains("onerror=") && !html.contains("onload="));
    }
}
