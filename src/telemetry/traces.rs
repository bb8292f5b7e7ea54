//! OpenTelemetry traces over OTLP/HTTP (protobuf), on when the standard
//! `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set; the
//! other standard `OTEL_*` variables (headers, service name, batch delays) apply too.
//!
//! The exporter's own HTTP clients want another major version of reqwest, so it is given
//! ours. Its batch processor exports from its own thread, outside the runtime, so each
//! export is handed to the runtime and awaited from there.

use std::time::Duration;

use opentelemetry::baggage::BaggageExt;
use opentelemetry::{Context, KeyValue};
use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{SpanExporter, WithExportConfig as _, WithHttpConfig as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SdkTracerProvider, Span, SpanData, SpanProcessor};

/// How long one export may take.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);
/// The baggage key that carries the request id to every span of a request.
pub const REQUEST_ID: &str = "request_id";

/// The tracer provider exporting to the configured endpoint (`Config::traces`), or
/// `None` when export is off. Shut it down (it flushes) before the runtime ends.
pub fn provider(
    enabled: bool,
    runtime: tokio::runtime::Handle,
) -> anyhow::Result<Option<SdkTracerProvider>> {
    if !enabled {
        return Ok(None);
    }
    let client = reqwest::Client::builder().timeout(EXPORT_TIMEOUT).build()?;
    let exporter = SpanExporter::builder()
        .with_http()
        .with_timeout(EXPORT_TIMEOUT)
        .with_http_client(OtlpHttp { client, runtime })
        .build()?;
    Ok(Some(
        SdkTracerProvider::builder()
            .with_resource(Resource::builder().with_service_name("countersign").build())
            .with_span_processor(RequestIdOnEverySpan)
            .with_batch_exporter(exporter)
            .build(),
    ))
}

/// The parent for a request's root span: no trace yet, the request id as baggage, so
/// every span beneath carries it.
pub fn request_context(request_id: &str) -> Context {
    Context::new().with_baggage([KeyValue::new(REQUEST_ID, request_id.to_owned())])
}

#[derive(Debug)]
struct OtlpHttp {
    client: reqwest::Client,
    runtime: tokio::runtime::Handle,
}

#[async_trait::async_trait]
impl HttpClient for OtlpHttp {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let client = self.client.clone();
        self.runtime
            .spawn(async move {
                let response = client.execute(reqwest::Request::try_from(request)?).await?;
                let (status, headers) = (response.status(), response.headers().clone());
                let mut answer = Response::builder()
                    .status(status)
                    .body(response.bytes().await?)?;
                *answer.headers_mut() = headers;
                Ok::<_, HttpError>(answer)
            })
            .await?
    }
}

/// Copies the request id from the baggage onto each span as it starts.
#[derive(Debug)]
struct RequestIdOnEverySpan;

impl SpanProcessor for RequestIdOnEverySpan {
    fn on_start(&self, span: &mut Span, cx: &Context) {
        use opentelemetry::trace::Span as _;
        if let Some(id) = cx.baggage().get(REQUEST_ID) {
            span.set_attribute(KeyValue::new(REQUEST_ID, id.to_string()));
        }
    }

    fn on_end(&self, _span: SpanData) {}

    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        Ok(())
    }
}
