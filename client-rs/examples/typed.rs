//! Typed reads with a fallback, and a conditional write.
//!
//! ```sh
//! cargo run --release -p graycast-server &
//! cargo run -p graycast-client --example typed
//! ```

use std::time::Duration;

use graycast_client::{Client, Expect};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
struct Retry {
    attempts: u32,
    backoff_ms: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let server =
        std::env::var("GRAYCAST_SERVER").unwrap_or_else(|_| "http://127.0.0.1:8080".into());
    let client = Client::builder().endpoint(server).namespace("payments").build()?;

    // Write the value only if nobody created it yet.
    let created = client
        .put(
            "payments",
            "retry",
            &serde_json::json!({"attempts": 3, "backoff_ms": 200}),
            Expect::Absent,
        )
        .await;
    match created {
        Ok(entry) => println!("created at revision {}", entry.revision),
        Err(err) if err.code() == Some("revision_mismatch") => println!("already there"),
        Err(err) => return Err(err.into()),
    }

    client.wait_synced(Duration::from_secs(5)).await?;
    if let Some(retry) = client.get::<Retry>("payments", "retry")? {
        println!("retry {} times, {} ms apart", retry.attempts, retry.backoff_ms);
    }

    // A value of the wrong type is an error, not a silent default...
    if let Err(err) = client.get::<String>("payments", "retry") {
        println!("as a string: {err} (temporary: {})", err.is_temporary());
    }
    // ...unless a default is asked for.
    println!("timeout: {} ms", client.get_or("payments", "timeout_ms", 250u64));
    Ok(())
}
