//! The runbook and the alert rules stay true: every metric they name is one the server
//! exports, every runbook link in the rules points at a section that exists, and (where
//! promtool is installed, as in CI) the rules parse as Prometheus rules.

use std::collections::BTreeSet;
use std::path::Path;

fn read(path: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(path)).expect(path)
}

/// `countersign_…` names in `text`, without the histogram suffixes Prometheus adds.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("countersign_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        let name = tail[..end]
            .trim_end_matches("_bucket")
            .trim_end_matches("_sum")
            .trim_end_matches("_count");
        names.insert(name.to_owned());
        rest = &tail[end..];
    }
    names
}

fn source_text() -> String {
    let mut all = String::new();
    let mut stack = vec![Path::new(env!("CARGO_MANIFEST_DIR")).join("src")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                all.push_str(&std::fs::read_to_string(path).unwrap());
            }
        }
    }
    all
}

/// GitHub's anchor for a heading: lower case, spaces to dashes, punctuation dropped.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

plain_tests!(
    the_runbook_and_alerts_name_only_metrics_the_server_exports,
    every_alert_links_a_runbook_section_that_exists,
    promtool_accepts_the_alert_rules_where_it_is_installed
);

async fn the_runbook_and_alerts_name_only_metrics_the_server_exports() {
    let source = source_text();
    let (alerts, runbook) = (read("docs/alerts.yml"), read("docs/RUNBOOK.md"));
    let named: BTreeSet<String> = metric_names(&alerts)
        .into_iter()
        .chain(metric_names(&runbook))
        .collect();
    assert!(named.len() > 10, "{named:?}");
    let missing: Vec<&String> = named
        .iter()
        .filter(|n| !source.contains(&format!("\"{n}\"")))
        .collect();
    assert!(
        missing.is_empty(),
        "named in the runbook or alerts but never exported: {missing:?}"
    );
}

async fn every_alert_links_a_runbook_section_that_exists() {
    let runbook = read("docs/RUNBOOK.md");
    let anchors: BTreeSet<String> = runbook
        .lines()
        .filter_map(|line| line.strip_prefix("## "))
        .map(anchor)
        .collect();
    let alerts = read("docs/alerts.yml");
    let links: Vec<&str> = alerts
        .lines()
        .filter_map(|line| line.trim().strip_prefix("runbook: \"docs/RUNBOOK.md#"))
        .map(|rest| rest.trim_end_matches('"'))
        .collect();
    assert_eq!(
        links.len(),
        alerts.matches("- alert:").count(),
        "every alert has a runbook link"
    );
    for link in links {
        assert!(
            anchors.contains(link),
            "no section #{link} in docs/RUNBOOK.md ({anchors:?})"
        );
    }
}

async fn promtool_accepts_the_alert_rules_where_it_is_installed() {
    let Ok(output) = std::process::Command::new("promtool")
        .args([
            "check",
            "rules",
            concat!(env!("CARGO_MANIFEST_DIR"), "/docs/alerts.yml"),
        ])
        .output()
    else {
        // CI installs Debian's prometheus package and checks the file itself too.
        eprintln!("promtool is not installed; .ci/run checks docs/alerts.yml with it");
        return;
    };
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );
}
