//! The OpenAPI 3 document of the REST API, generated from the handlers' annotations.

use graycast_protocol::gray::{
    GrayPatch, GrayRequest, GrayStatus, GuardCounts, OutcomeCounts, ReleaseDecision, ReportRequest,
};
use graycast_protocol::rest::{
    ClientList, ClientSummary, ConfigList, DeleteResponse, HistoryList, NamespaceList,
    NamespaceSummary, PutRequest, RollbackRequest,
};
use graycast_protocol::{
    Entry, ErrorBody, ErrorDetail, Gray, Guard, HistoryItem, Op, Reason, Rule, RuleOp, Step,
    Variant,
};
use utoipa::OpenApi;

use crate::routes::{clients, configs, gray, health, release, watch};

/// The API document served at `/openapi.json`.
#[derive(OpenApi)]
#[openapi(
    modifiers(&BearerToken),
    info(title = "graycast", description = "Real-time configuration center with gray releases."),
    paths(
        configs::namespaces,
        configs::list,
        configs::get,
        configs::put,
        configs::delete,
        configs::history,
        configs::rollback,
        gray::start,
        gray::patch,
        gray::promote,
        gray::abort,
        gray::status,
        gray::report,
        release::release,
        clients::clients,
        watch::watch,
        health::healthz,
        health::readyz,
        health::metrics,
        health::openapi,
    ),
    components(schemas(
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
        ConfigList,
        HistoryList,
        ClientList,
        ClientSummary,
    ))
)]
pub struct ApiDoc;

/// Declares the bearer token of SPEC §7 as the API's security scheme. Servers started
/// without a token file accept requests without it.
struct BearerToken;

impl utoipa::Modify for BearerToken {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{
            Http, HttpAuthScheme, SecurityRequirement, SecurityScheme,
        };
        let components = openapi.components.get_or_insert_with(Default::default);
        components
            .add_security_scheme("bearer", SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)));
        openapi.security = Some(vec![SecurityRequirement::new("bearer", Vec::<String>::new())]);
    }
}
