//! Follows a namespace on a local server: prints its keys, then every change.
//!
//! ```sh
//! cargo run --release -p graycast-server &
//! cargo run -p graycast-client --example follow -- payments
//! curl -X PUT localhost:8080/v1/configs/payments/timeout_ms --json '{"value": 250}'
//! ```

use std::time::Duration;

use futures_util::StreamExt;
use graycast_client::{Client, Filter};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let namespace = std::env::args().nth(1).unwrap_or_else(|| "payments".to_owned());
    let server =
        std::env::var("GRAYCAST_SERVER").unwrap_or_else(|_| "http://127.0.0.1:8080".into());
    let client = Client::builder()
        .endpoint(server)
        .namespace(&namespace)
        .label("example", "follow")
        .cache_file(std::env::temp_dir().join(format!("graycast-follow-{namespace}.json")))
        .build()?;
    match client.wait_synced(Duration::from_secs(3)).await {
        Ok(()) => println!("in sync at revision {}", client.revision()),
        Err(err) => {
            println!("server not reachable ({err}); serving the cache file: {:?}", client.status())
        }
    }
    for entry in client.list(&namespace) {
        println!("{} = {}", entry.key, entry.value);
    }
    let mut changes = std::pin::pin!(client.changes(Filter::namespace(&namespace)));
    while let Some(change) = changes.next().await {
        let value = change.entry.as_ref().map(|e| e.value.to_string()).unwrap_or_default();
        println!("revision {} {} {} {}", change.revision, change.op.as_str(), change.key, value);
    }
    Ok(())
}
