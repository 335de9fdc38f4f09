//! The OpenAPI 3 document of the REST API, generated from the handlers' annotations.

use graycast_protocol::rest::{
    ClientList, ClientSummary, ConfigList, DeleteResponse, HistoryList, NamespaceList,
    NamespaceSummary, PutRequest, RollbackRequest,
};
use graycast_protocol::{
    Entry, ErrorBody, ErrorDetail, Gray, Guard, HistoryItem, Op, Rule, RuleOp, Step,
};
use utoipa::OpenApi;

use crate::routes::{clients, configs, health, watch};

/// The API document served at `/openapi.json`.
#[derive(OpenApi)]
#[openapi(
    info(title = "graycast", description = "Real-time configuration center with gray releases."),
    paths(
        configs::namespaces,
        configs::list,
        configs::get,
        configs::put,
        configs::delete,
        configs::history,
        configs::rollback,
        clients::clients,
        watch::watch,
        health::healthz,
        health::readyz,
        health::metrics,
        health::openapi,
    ),
    components(schemas(
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
