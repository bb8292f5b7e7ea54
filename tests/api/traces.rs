//! Traces: with the standard `OTEL_EXPORTER_OTLP_ENDPOINT` pointing at a receiver started
//! here, a GraphQL operation arrives as one span tree — the HTTP request, the operation
//! named after itself, its resolvers and its SQL statements — every span carrying the
//! request id. The server runs as its own process: the tracing subscriber is per process.

use std::collections::HashMap;
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use serde_json::json;

use crate::helpers::{Backend, TestDatabase};

fn attribute(span: &Span, key: &str) -> Option<String> {
    span.attributes.iter().find(|a| a.key == key).and_then(|a| {
        match a.value.as_ref()?.value.as_ref()? {
            Any::StringValue(s) => Some(s.clone()),
            other => Some(format!("{other:?}")),
        }
    })
}

backend_tests!(a_graphql_operation_is_exported_as_one_span_tree_with_its_resolvers_and_sql);

async fn a_graphql_operation_is_exported_as_one_span_tree_with_its_resolvers_and_sql(
    backend: Backend,
) {
    let (spans_tx, mut spans_rx) = tokio::sync::mpsc::unbounded_channel::<(Vec<String>, Span)>();
    let receiver = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |body: axum::body::Bytes| {
            let spans_tx = spans_tx.clone();
            async move {
                let export = ExportTraceServiceRequest::decode(body).expect("OTLP protobuf");
                for resource in export.resource_spans {
                    let service: Vec<String> = resource
                        .resource
                        .iter()
                        .flat_map(|r| r.attributes.iter())
                        .filter(|a| a.key == "service.name")
                        .filter_map(|a| match a.value.as_ref()?.value.as_ref()? {
                            Any::StringValue(s) => Some(s.clone()),
                            _ => None,
                        })
                        .collect();
                    for scope in resource.scope_spans {
                        for span in scope.spans {
                            let _ = spans_tx.send((service.clone(), span));
                        }
                    }
                }
                axum::http::StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, receiver).await });

    let database = TestDatabase::create(backend).await;
    let cwd = std::env::temp_dir().join(format!("cs-otel-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&cwd).unwrap();
    let crate::shutdown::Served {
        mut child,
        address,
        tokens,
    } = crate::shutdown::serve_with(
        &database.url,
        &cwd,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ],
    )
    .await;
    let response = reqwest::Client::new()
        .post(format!("{address}/graphql"))
        .bearer_auth(&tokens["grace"])
        .json(&json!({ "query": "query WhoAmI { viewer { subject name } policies { key stages { name } } }" }))
        .send()
        .await
        .unwrap();
    let request_id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let body: serde_json::Value = response.json().await.unwrap();
    assert!(body["errors"].is_null(), "{body}");

    // Collect spans until the operation's trace has its HTTP root and its SQL.
    let mut spans: Vec<(Vec<String>, Span)> = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let trace = loop {
        let next = tokio::time::timeout_at(deadline, spans_rx.recv()).await;
        spans.push(
            next.expect("spans arrive within 20 s")
                .expect("the receiver runs"),
        );
        let Some((_, operation)) = spans.iter().find(|(_, s)| s.name == "query WhoAmI") else {
            continue;
        };
        let trace: Vec<&Span> = spans
            .iter()
            .map(|(_, s)| s)
            .filter(|s| s.trace_id == operation.trace_id)
            .collect();
        let has_root = trace.iter().any(|s| s.parent_span_id.is_empty());
        let has_sql = trace.iter().any(|s| s.name.starts_with("sea_orm."));
        if has_root && has_sql {
            break trace.into_iter().cloned().collect::<Vec<Span>>();
        }
    };
    let by_id: HashMap<&[u8], &Span> = trace.iter().map(|s| (s.span_id.as_slice(), s)).collect();
    let ancestors = |span: &Span| {
        let mut names = Vec::new();
        let mut parent = span.parent_span_id.as_slice();
        while let Some(up) = by_id.get(parent) {
            names.push(up.name.clone());
            parent = up.parent_span_id.as_slice();
        }
        names
    };
    let operation = trace.iter().find(|s| s.name == "query WhoAmI").unwrap();
    assert_eq!(
        ancestors(operation),
        ["http"],
        "the operation sits in the HTTP request's span"
    );
    let resolvers: Vec<&Span> = trace
        .iter()
        .filter(|s| {
            ancestors(s).contains(&"query WhoAmI".to_owned()) && !s.name.starts_with("sea_orm.")
        })
        .collect();
    assert!(
        resolvers
            .iter()
            .any(|s| attribute(s, "path").is_some_and(|p| p.contains("policies"))),
        "a resolver span for `policies`: {:?}",
        trace.iter().map(|s| &s.name).collect::<Vec<_>>()
    );
    let sql: Vec<&Span> = trace
        .iter()
        .filter(|s| {
            s.name.starts_with("sea_orm.") && ancestors(s).contains(&"query WhoAmI".to_owned())
        })
        .collect();
    assert!(
        !sql.is_empty(),
        "SQL statements beneath the operation: {:?}",
        trace
            .iter()
            .map(|s| (&s.name, ancestors(s)))
            .collect::<Vec<_>>()
    );
    assert!(sql.iter().any(|s| {
        attribute(s, "db.statement").is_some_and(|q| q.to_lowercase().contains("select"))
    }));
    for span in &trace {
        assert_eq!(
            attribute(span, "request_id").as_deref(),
            Some(request_id.as_str()),
            "span {} carries the request id",
            span.name
        );
    }
    assert!(
        spans
            .iter()
            .all(|(service, _)| service == &["countersign".to_owned()])
    );

    let pid = child.id().unwrap().to_string();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    let exit = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("exits")
        .unwrap();
    assert!(exit.success());
    std::fs::remove_dir_all(cwd).ok();
}
