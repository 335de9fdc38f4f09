//! `graycastctl request …`: change requests for namespaces under a policy.

use graycast_client::Client;
use serde_json::{json, Value};

use crate::args::RequestVerb;
use crate::output::{compact, out, print_json};
use crate::parse::read_value;
use crate::Failure;

pub async fn request(client: Client, verb: RequestVerb, json: bool) -> Result<(), Failure> {
    let shown = match verb {
        RequestVerb::Create { op, namespace, key, value, ops, apply_at } => {
            let ops = match (ops, op.as_deref()) {
                (Some(ops), _) => read_value(&ops)?,
                (None, Some("put")) => {
                    let (namespace, key, value) = match (namespace, key, value) {
                        (Some(n), Some(k), Some(v)) => (n, k, read_value(&v)?),
                        _ => return Err(usage("put takes NAMESPACE KEY VALUE")),
                    };
                    json!([{ "op": "put", "namespace": namespace, "key": key, "body": { "value": value } }])
                }
                (None, Some("delete")) => match (namespace, key, value) {
                    (Some(n), Some(k), None) => json!([{ "op": "delete", "namespace": n, "key": k }]),
                    _ => return Err(usage("delete takes NAMESPACE KEY")),
                },
                (None, _) => {
                    return Err(usage("say what to change: put NAMESPACE KEY VALUE, delete NAMESPACE KEY, or --ops @FILE"))
                }
            };
            client.create_change_request(&ops, apply_at.as_deref()).await?
        }
        RequestVerb::List { state } => {
            let list = client.change_requests(state.as_deref()).await?;
            if json {
                print_json(&list);
            } else {
                for request in list["requests"].as_array().into_iter().flatten() {
                    out!(
                        "{}\t{}\tby {}\t{} of {} approvals\t{}",
                        text(&request["id"]),
                        text(&request["state"]),
                        text(&request["author"]),
                        request["approvals"].as_array().map_or(0, Vec::len),
                        request["required"],
                        summary(request)
                    );
                }
            }
            return Ok(());
        }
        RequestVerb::Show { id } => client.change_request(&id).await?,
        RequestVerb::Approve { id, digest } => {
            client.act_on_change_request(&id, "approve", Some(&digest), None).await?
        }
        RequestVerb::Reject { id, reason } => {
            client.act_on_change_request(&id, "reject", None, reason.as_deref()).await?
        }
        RequestVerb::Apply { id } => client.act_on_change_request(&id, "apply", None, None).await?,
        RequestVerb::Cancel { id } => {
            client.act_on_change_request(&id, "cancel", None, None).await?
        }
    };
    if json {
        print_json(&shown);
    } else {
        print_request(&shown);
    }
    Ok(())
}

fn usage(text: &str) -> Failure {
    Failure::Usage(format!("request create: {text}"))
}

fn text(value: &Value) -> &str {
    value.as_str().unwrap_or("")
}

/// One line of what a request does.
fn summary(request: &Value) -> String {
    let ops: Vec<String> = request["ops"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|op| {
            let value =
                op["body"].get("value").map(|v| format!(" = {}", compact(v))).unwrap_or_default();
            format!("{} {}/{}{value}", text(&op["op"]), text(&op["namespace"]), text(&op["key"]))
        })
        .collect();
    ops.join("; ")
}

fn print_request(request: &Value) {
    out!("change request {}: {}", text(&request["id"]), text(&request["state"]));
    out!(
        "  by {}{}",
        text(&request["author"]),
        request["comment"].as_str().map(|c| format!(": {c}")).unwrap_or_default()
    );
    out!("  does: {}", summary(request));
    for (slot, revision) in request["base_revisions"].as_object().into_iter().flatten() {
        out!("  based on {slot} at revision {revision}");
    }
    if let Some(at) = request["apply_at"].as_str() {
        out!("  applies at {at}");
    }
    let approvers: Vec<&str> =
        request["approvals"].as_array().into_iter().flatten().map(|a| text(&a["by"])).collect();
    out!("  approvals: {} of {} ({})", approvers.len(), request["required"], approvers.join(", "));
    if let Some(reason) = request["reason"].as_str() {
        out!("  why: {reason}");
    }
    out!("  digest: {}", text(&request["digest"]));
    match text(&request["state"]) {
        "open" => out!(
            "  approve: graycastctl request approve {} --digest {}",
            text(&request["id"]),
            text(&request["digest"])
        ),
        "approved" => out!("  apply: graycastctl request apply {}", text(&request["id"])),
        _ => {}
    }
}
