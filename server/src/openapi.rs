//! The OpenAPI 3 document of the REST API, generated from the handlers' annotations.
//!
//! What is true of every route is added in one place ([`Contract`]) rather than repeated
//! on each handler: the name rule of `{ns}` and `{key}`, the error answers every API route
//! may give (the JSON error body), what the server checks on request bodies, and the
//! bearer token, which API routes take and operational ones do not.

use graycast_protocol::gray::{
    GrayPatch, GrayRequest, GrayStatus, GuardCounts, OutcomeCounts, ReleaseDecision, ReportRequest,
};
use graycast_protocol::rest::{
    ChangeItem, ChangeList, ClientList, ClientSummary, ConfigList, DeleteResponse, ExportDocument,
    HistoryList, ImportReport, KeyRef, NamespaceDescribed, NamespaceDescription, NamespaceList,
    NamespaceSummary, PutRequest, RollbackRequest, WhoAmI,
};
use graycast_protocol::{
    Entry, ErrorBody, ErrorDetail, Gray, Guard, HistoryItem, Op, Reason, Rule, RuleOp, Step,
    Variant,
};
use utoipa::openapi::path::{Operation, Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ObjectBuilder, Ref, RefOr, Required, ResponseBuilder, Type};
use utoipa::OpenApi;

use crate::routes::{
    changes, clients, configs, events, gray, health, namespaces, ofrep, release, requests, schemas,
    transfer, watch,
};

/// The API document served at `/openapi.json`.
#[derive(OpenApi)]
#[openapi(
    modifiers(&Contract),
    info(title = "graycast", description = "Real-time configuration center with gray releases."),
    paths(
        namespaces::namespaces,
        namespaces::describe,
        namespaces::whoami,
        changes::changes,
        transfer::export,
        transfer::import,
        configs::list,
        configs::get,
        configs::put,
        configs::delete,
        configs::history,
        configs::rollback,
        schemas::get,
        schemas::put,
        schemas::delete,
        schemas::history,
        schemas::rollback,
        requests::get_policies,
        requests::put_policies,
        requests::create,
        requests::list,
        requests::show,
        requests::edit,
        requests::act,
        requests::reviews,
        requests::acknowledge,
        gray::start,
        gray::patch,
        gray::promote,
        gray::abort,
        gray::status,
        gray::report,
        release::release,
        ofrep::single,
        ofrep::bulk,
        clients::clients,
        clients::nack,
        watch::watch,
        events::events,
        health::healthz,
        health::readyz,
        health::metrics,
        serve,
    ),
    components(schemas(
        ofrep::EvaluationRequest,
        GrayRequest,
        GrayPatch,
        ReportRequest,
        GrayStatus,
        GuardCounts,
        OutcomeCounts,
        ReleaseDecision,
        Variant,
        Reason,
        Entry,
        Gray,
        Guard,
        Rule,
        RuleOp,
        Step,
        Op,
        HistoryItem,
        ErrorBody,
        ErrorDetail,
        PutRequest,
        RollbackRequest,
        DeleteResponse,
        NamespaceList,
        NamespaceSummary,
        NamespaceDescription,
        NamespaceDescribed,
        WhoAmI,
        ChangeItem,
        ChangeList,
        ExportDocument,
        ImportReport,
        KeyRef,
        ConfigList,
        HistoryList,
        ClientList,
        ClientSummary,
        graycast_protocol::rest::Rejection,
        graycast_protocol::ws::Nack,
        schemas::SchemaRequest,
        requests::RequestBody,
        requests::ActionBody,
        requests::RequestList,
        crate::requests::ChangeRequest,
        crate::requests::OpSpec,
        crate::requests::OpKind,
        crate::requests::State,
        crate::requests::Approval,
        crate::requests::Transition,
        crate::policy::Policies,
        crate::policy::Policy,
        schemas::SchemaAnswer,
        crate::schema::Mode,
        crate::schema::Violation,
    ))
)]
pub struct ApiDoc;

/// The rule every namespace and key name follows.
const NAME_PATTERN: &str = "^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$";

/// `*`, or a comma-separated list of entity tags (RFC 9110 §8.8.3), empty elements allowed;
/// a bare alphanumeric tag is read as if quoted.
const ENTITY_TAGS: &str =
    r#"^\s*(\*|(,\s*)*((W/)?"[!#-~]*"|[A-Za-z0-9]+)(\s*,\s*((W/)?"[!#-~]*"|[A-Za-z0-9]+)?)*)\s*$"#;

/// Adds what every route shares to the generated document.
struct Contract;

impl utoipa::Modify for Contract {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components
            .add_security_scheme("bearer", SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)));
        for (path, item) in openapi.paths.paths.iter_mut() {
            let api = path.starts_with("/v1/");
            let operations = [
                (&mut item.get, false),
                (&mut item.put, true),
                (&mut item.post, true),
                (&mut item.delete, true),
                (&mut item.patch, true),
            ];
            for (operation, writes) in operations {
                let Some(operation) = operation.as_mut() else { continue };
                if api {
                    describe_api_operation(path, operation, writes);
                } else {
                    // Liveness, readiness, metrics and this document need no token.
                    operation.security = Some(vec![SecurityRequirement::default()]);
                }
            }
        }
    }
}

fn describe_api_operation(path: &str, operation: &mut Operation, writes: bool) {
    // A token when the server has a token file; none on an open (loopback) server.
    operation.security = Some(vec![
        SecurityRequirement::new("bearer", Vec::<String>::new()),
        SecurityRequirement::default(),
    ]);
    let parameters = operation.parameters.get_or_insert_with(Vec::new);
    // The `{ns}` and `{key}` of a path, declared here once for every route.
    for (name, description) in [
        ("key", "the key"),
        ("ns", "the namespace"),
        ("id", "the change request's or review item's id"),
        ("action", "approve, reject, cancel, rebase or apply"),
    ] {
        let declared = parameters.iter().any(|p| p.name == name);
        if path.contains(&format!("{{{name}}}")) && !declared {
            let parameter = ParameterBuilder::new()
                .name(name)
                .parameter_in(ParameterIn::Path)
                .required(Required::True)
                .description(Some(description))
                .build();
            parameters.insert(0, parameter);
        }
    }
    for parameter in parameters.iter_mut() {
        if parameter.parameter_in == ParameterIn::Path
            && matches!(parameter.name.as_str(), "id" | "action")
        {
            parameter.schema = Some(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .min_length(Some(1))
                    .max_length(Some(128))
                    .into(),
            );
        }
        if parameter.parameter_in == ParameterIn::Path
            && matches!(parameter.name.as_str(), "ns" | "key")
        {
            parameter.schema = Some(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .pattern(Some(NAME_PATTERN))
                    .min_length(Some(1))
                    .max_length(Some(128))
                    .into(),
            );
        }
    }
    let bodiless_write = writes && operation.request_body.is_none() && path != "/v1/watch";
    if bodiless_write {
        parameters.push(query("comment", "why, in the author's words (at most 1 KiB)"));
    }
    if writes && path != "/v1/watch" && path != "/v1/import" {
        parameters.push(
            ParameterBuilder::new()
                .name("Idempotency-Key")
                .parameter_in(ParameterIn::Header)
                .required(Required::False)
                .description(Some(
                    "makes the write once: a repeat with the same key and request answers the \
                     first outcome and changes nothing (kept 24 hours, on every node and \
                     across restarts); the same key with another request is 422",
                ))
                .schema(Some(
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .pattern(Some("^[!-~]{1,255}$"))
                        .min_length(Some(1))
                        .max_length(Some(255)),
                ))
                .build(),
        );
    }
    let mut errors = vec![
        (400, "a malformed request: a bad name, query or header"),
        (401, "a token is needed, or the one given is not valid"),
        (403, "the token may not do this, or a cross-origin request was refused"),
        (405, "the method is not served on this path"),
        (503, "the store cannot take the request now"),
    ];
    if path.contains("{key}") || path.contains("{ns}") {
        errors.push((404, "no such key, revision or gray release"));
    }
    if writes {
        errors.extend([
            (408, "the request body did not arrive in time"),
            (412, "the key is not at the expected revision (If-Match, If-None-Match)"),
            (413, "the body or the value is over its size limit"),
            (415, "the body is not declared as JSON"),
            (422, "the value or the release is not valid, or the Idempotency-Key was used for another request"),
            (504, "the write may or may not have taken effect: retry it with the same Idempotency-Key"),
            (507, "the store is at its quota"),
        ]);
    }
    for (status, description) in errors {
        operation.responses.responses.entry(status.to_string()).or_insert_with(|| {
            RefOr::T(
                ResponseBuilder::new()
                    .description(description)
                    .content(
                        "application/json",
                        utoipa::openapi::ContentBuilder::new()
                            .schema(Some(RefOr::Ref(Ref::from_schema_name("ErrorBody"))))
                            .build(),
                    )
                    .build(),
            )
        });
    }
}

fn query(name: &str, description: &str) -> Parameter {
    ParameterBuilder::new()
        .name(name)
        .parameter_in(ParameterIn::Query)
        .required(Required::False)
        .description(Some(description))
        .schema(Some(ObjectBuilder::new().schema_type(Type::String).max_length(Some(1024))))
        .build()
}

/// The served document: the generated one, with the constraints the server enforces on
/// request fields written into their schemas (what serde and utoipa cannot say: ranges,
/// lengths, item counts), so that the document is exact.
pub fn document() -> serde_json::Value {
    let mut doc = serde_json::to_value(ApiDoc::openapi()).unwrap_or_default();
    refine(&mut doc);
    doc
}

fn refine(doc: &mut serde_json::Value) {
    use serde_json::json;
    unsigned_integers(doc);
    // OFREP's own document takes any non-negative integer or a date-time here (and so does
    // the server): no 64-bit bound.
    let parameters = "/paths/~1ofrep~1v1~1evaluate~1flags/post/parameters";
    if let Some(serde_json::Value::Array(parameters)) = doc.pointer_mut(parameters) {
        for parameter in parameters.iter_mut() {
            if parameter["name"] == "flagConfigLastModified" {
                parameter["schema"] = json!({"oneOf": [
                    {"type": "integer", "minimum": 0},
                    {"type": "string", "format": "date-time"}
                ]});
            }
        }
    }
    let percent = json!({"minimum": 0, "maximum": 100, "multipleOf": 0.01});
    let subjects =
        json!({"maxItems": 10000, "items": {"type": "string", "minLength": 1, "maxLength": 256}});
    let comment = json!({"maxLength": 1024});
    let schemas = "/components/schemas";
    let fields: [(&str, serde_json::Value); 19] = [
        ("GrayRequest/properties/percent", percent.clone()),
        ("GrayRequest/properties/salt", json!({"minLength": 1, "maxLength": 256})),
        ("GrayRequest/properties/allow", subjects.clone()),
        ("GrayRequest/properties/deny", subjects.clone()),
        ("GrayRequest/properties/rules", json!({"maxItems": 32})),
        ("GrayRequest/properties/steps", json!({"maxItems": 20})),
        ("GrayRequest/properties/comment", comment.clone()),
        ("GrayPatch/properties/percent", percent.clone()),
        ("GrayPatch/properties/allow", subjects.clone()),
        ("GrayPatch/properties/deny", subjects),
        ("GrayPatch/properties/rules", json!({"maxItems": 32})),
        ("GrayPatch/properties/comment", comment.clone()),
        ("Step/properties/percent", percent),
        ("Step/properties/hold_secs", json!({"minimum": 1, "maximum": 2_592_000})),
        ("Guard/properties/max_error_rate", json!({"minimum": 0, "maximum": 1})),
        ("Guard/properties/min_samples", json!({"minimum": 1})),
        ("Rule/properties/attribute", json!({"minLength": 1, "maxLength": 256})),
        (
            "Rule/properties/values",
            json!({"minItems": 1, "maxItems": 1000, "items": {"type": "string", "minLength": 1, "maxLength": 256}}),
        ),
        ("ReportRequest/properties/ok", json!({"maximum": 10000})),
    ];
    for (path, constraints) in fields {
        merge(doc.pointer_mut(&format!("{schemas}/{path}")), constraints);
    }
    merge(
        doc.pointer_mut(&format!("{schemas}/ReportRequest/properties/errors")),
        json!({"maximum": 10000}),
    );
    for body in ["PutRequest", "RollbackRequest"] {
        merge(doc.pointer_mut(&format!("{schemas}/{body}/properties/comment")), comment.clone());
    }
    // Query and header parameters.
    let Some(paths) = doc.get_mut("paths").and_then(|p| p.as_object_mut()) else { return };
    for item in paths.values_mut() {
        let Some(item) = item.as_object_mut() else { continue };
        for operation in item.values_mut() {
            let Some(parameters) = operation.get_mut("parameters").and_then(|p| p.as_array_mut())
            else {
                continue;
            };
            for parameter in parameters {
                let name =
                    parameter.get("name").and_then(|n| n.as_str()).unwrap_or_default().to_owned();
                if parameter.get("in").and_then(|i| i.as_str()) == Some("header") {
                    // An absent header is absent: never `null`.
                    merge(parameter.get_mut("schema"), json!({"type": "string"}));
                }
                let constraints = match name.as_str() {
                    "limit" => json!({"minimum": 1, "maximum": 1000}),
                    "after" | "namespace" | "key" => {
                        json!({"pattern": NAME_PATTERN, "minLength": 1, "maxLength": 128})
                    }
                    "If-Match" | "If-None-Match" => json!({"pattern": ENTITY_TAGS}),
                    _ => continue,
                };
                merge(parameter.get_mut("schema"), constraints);
            }
        }
    }
}

/// Rust's unsigned integers (revisions, counts) as JSON Schema integers with their real
/// range; utoipa names the revision alias `u64` as if it were a schema of its own.
fn unsigned_integers(value: &mut serde_json::Value) {
    use serde_json::{json, Value};
    match value {
        Value::Object(map) => {
            if map.get("$ref").and_then(Value::as_str) == Some("#/components/schemas/u64") {
                *value = json!({"type": "integer", "minimum": 0, "maximum": u64::MAX});
                return;
            }
            let integer = map.get("type").is_some_and(|t| {
                t == "integer" || t.as_array().is_some_and(|a| a.iter().any(|t| t == "integer"))
            });
            if integer && map.get("minimum") == Some(&json!(0)) {
                let maximum = match map.get("format").and_then(Value::as_str) {
                    Some("int32") => json!(u32::MAX),
                    _ => json!(u64::MAX),
                };
                map.insert("maximum".into(), maximum);
                map.remove("format");
            }
            for child in map.values_mut() {
                unsigned_integers(child);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(unsigned_integers),
        _ => {}
    }
}

fn merge(target: Option<&mut serde_json::Value>, constraints: serde_json::Value) {
    let (Some(serde_json::Value::Object(target)), serde_json::Value::Object(constraints)) =
        (target, constraints)
    else {
        return;
    };
    for (name, value) in constraints {
        target.insert(name, value);
    }
}

/// This API as an OpenAPI 3 document, generated from the handlers and wire types.
#[utoipa::path(get, path = "/openapi.json", tag = "operations", responses((status = 200)))]
pub async fn serve() -> actix_web::HttpResponse {
    actix_web::HttpResponse::Ok().json(document())
}
