// The README's SDK example, whole (the tests run it against a real server).
// Run a server (`cargo run --release -p graycast-server`), then
// `cargo run -p graycast-client --example quickstart`.
use std::time::Duration;

use futures_util::StreamExt;
use graycast_client::{Client, Context, Expect, Filter};

#[tokio::main]
async fn main() -> Result<(), graycast_client::Error> {
    let server = std::env::var("GRAYCAST_SERVER").unwrap_or("http://127.0.0.1:8080".into());
    let client = Client::builder()
        .endpoint(server) // one .endpoint() per node of a cluster
        .namespace("payments")
        .cache_file(std::env::temp_dir().join("graycast-quickstart.json")) // serves the last state while the server is down
        .build()?;
    client.wait_synced(Duration::from_secs(5)).await?; // a refused token fails here at once

    // The value this user gets: the gray value if a running gray release includes them.
    let user = Context::subject("user-42").attr("region", "eu-west");
    let timeout: u64 = client.get_for("payments", "timeout_ms", &user)?.unwrap_or(250);
    println!("user-42 gets timeout_ms = {timeout}");

    // A typed handle keeps serving the last good value if someone writes "oops".
    let limit = client.typed::<u64>("payments", "limit")?;
    println!("limit = {:?}", limit.get());

    // Changes arrive as a Stream (pin it to poll it); writes come back through it too.
    let mut changes = std::pin::pin!(client.changes(Filter::key("payments", "timeout_ms")));
    let written = client
        .with_comment("tuned by the quickstart")
        .put("payments", "timeout_ms", &(timeout + 50), Expect::Any)
        .await?;
    if let Ok(Some(change)) = tokio::time::timeout(Duration::from_secs(5), changes.next()).await {
        let value = change.entry.map(|e| e.value.clone());
        println!(
            "pushed: revision {} timeout_ms = {value:?} ({:?})",
            change.revision, change.comment
        );
        assert_eq!(change.revision, written.revision);
    }
    Ok(())
}
