//! A request's payload and a policy's payload schema: any JSON is either refused as bad
//! input or checked against each demo policy's schema without a fault; and as a schema, it
//! is refused or compiles.

#![no_main]

use std::sync::OnceLock;

use countersign::approvals::model::validate_json;
use countersign::approvals::submit::check_payload_schema;
use countersign::error::AppError;
use libfuzzer_sys::fuzz_target;

fn schemas() -> &'static [(&'static str, serde_json::Value)] {
    static SCHEMAS: OnceLock<Vec<(&'static str, serde_json::Value)>> = OnceLock::new();
    SCHEMAS.get_or_init(countersign::demo::payload_schemas)
}

fuzz_target!(|data: &[u8]| {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    if validate_json("payload", &value).is_err() {
        return;
    }
    for (key, schema) in schemas() {
        if let Err(err) = check_payload_schema(schema, &value) {
            assert!(
                matches!(err, AppError::BadUserInput { .. }),
                "{key}: {err:?}"
            );
        }
    }
    let _ = jsonschema::validator_for(&value);
});
