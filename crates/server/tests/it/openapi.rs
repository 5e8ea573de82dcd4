//! The OpenAPI document: it lists exactly the router's routes, the committed copy in
//! `docs/openapi.json` is current, and the server serves it to anyone. (Whether responses match
//! it is what schemathesis checks, `fuzz/api.sh`.)

use std::collections::BTreeSet;

use axum::http::{Method, StatusCode};
use permgate_server::openapi::document;
use permgate_testkit::TestApp;

use crate::access::routes;

/// The methods `/v1/authz` documents for the router's `any`.
const AUTHZ_METHODS: [&str; 5] = ["GET", "POST", "PUT", "PATCH", "DELETE"];

fn documented() -> BTreeSet<(String, String)> {
    let doc = document();
    let mut out = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().into_iter().flatten() {
        for method in item.as_object().into_iter().flatten().map(|(m, _)| m.to_ascii_uppercase()) {
            out.insert((method, path.clone()));
        }
    }
    out
}

#[test]
fn the_document_lists_exactly_the_routes_the_router_serves() {
    let mut served = BTreeSet::new();
    for (method, path) in routes() {
        // `{*original}` (the rest of the path) is one `{original}` parameter in OpenAPI.
        let path = path.replace("{*", "{");
        if path.starts_with("/v1/authz") {
            // Routed with `any`: the document names each method a proxy forwards.
            served.extend(AUTHZ_METHODS.iter().map(|m| ((*m).to_owned(), path.clone())));
        } else {
            served.insert((method, path));
        }
    }
    let documented = documented();
    let undocumented: Vec<_> = served.difference(&documented).collect();
    let unserved: Vec<_> = documented.difference(&served).collect();
    assert!(
        undocumented.is_empty() && unserved.is_empty(),
        "routes missing from crates/server/src/openapi.rs: {undocumented:?}; documented but not routed: {unserved:?}"
    );
    assert!(served.len() > 60, "the route parser found only {} routes", served.len());
}

#[test]
fn every_operation_has_an_id_a_summary_and_the_error_shape() {
    let doc = document();
    let mut ids = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().into_iter().flatten() {
        for (method, op) in item.as_object().into_iter().flatten() {
            let id = op["operationId"].as_str().unwrap_or_default();
            assert!(
                !id.is_empty() && ids.insert(id.to_owned()),
                "{method} {path}: missing or repeated operationId {id}"
            );
            assert!(op["summary"].as_str().is_some_and(|s| !s.is_empty()), "{method} {path}: no summary");
            assert_eq!(op["responses"]["default"]["$ref"], "#/components/responses/Error", "{method} {path}");
            for (status, response) in op["responses"].as_object().into_iter().flatten() {
                if status != "default" {
                    assert!(response["description"].is_string(), "{method} {path} {status}: no description");
                }
            }
        }
    }
    let error = &doc["components"]["schemas"]["Error"];
    assert_eq!(error["required"], serde_json::json!(["msg", "code"]));
    // Every $ref points at a schema the document has.
    let text = doc.to_string();
    for piece in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
        let name = piece.split('"').next().unwrap_or_default();
        assert!(doc["components"]["schemas"].get(name).is_some(), "dangling $ref to {name}");
    }
}

#[test]
fn the_committed_document_is_current() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/openapi.json");
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    let current = format!("{:#}\n", document());
    assert!(
        committed == current,
        "docs/openapi.json is out of date with the code; regenerate it with `cargo run -q -- openapi > docs/openapi.json`"
    );
}

#[tokio::test]
async fn the_server_serves_it_to_anyone() {
    let t = TestApp::spawn().await;
    let (status, body) = t.call(Method::GET, "/openapi.json", None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, document());
    assert_eq!(body["openapi"], "3.1.0");
}

/// Found by schemathesis: a repeated query parameter and a path segment that is not UTF-8 once
/// decoded were answered by axum in plain text; they are 400 / -2 in the JSON shape.
#[tokio::test]
async fn malformed_query_strings_and_paths_get_the_json_error() {
    let t = TestApp::spawn().await;
    for path in [
        "/v1/audit?limit=1&limit=2",
        "/v1/notifications?app_id=1&app_id=1",
        "/v1/permission-requests?app_id=null&app_id=null",
        "/v1/apps/1/explain?path=/a&path=/b",
        "/v1/apps/%FF",
        "/v1/permission-requests/%C3%28",
    ] {
        let (status, body) = t.call(Method::GET, path, Some(&t.admin), None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {body}");
        assert_eq!(body["code"], -2, "{path}: {body}");
        assert!(body["msg"].as_str().is_some_and(|m| !m.is_empty()), "{path}: {body}");
    }
}
