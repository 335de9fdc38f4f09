//! `conns`: N idle subscribed connections: resident memory each, and how much of it the
//! server gives back once they close.

use std::time::Duration;

use anyhow::Result;
use tokio::sync::mpsc;

use super::publisher::Publisher;
use super::report::Row;
use super::servers::Server;
use super::settings::Settings;
use super::subscribers::subscribe_all;

/// How long after the connections close their memory is measured.
const SETTLE_AFTER_CLOSE: Duration = Duration::from_secs(12);

/// Idle subscribed connections: what each costs the server, and whether the memory comes
/// back once they close.
pub(super) async fn run(server: &Server, settings: &Settings) -> Result<Row> {
    let n = settings.subscribers;
    // One update first, so the server's own first-use allocations are in the baseline.
    let mut publisher = Publisher::connect(server).await?;
    publisher.send(0).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let baseline = server.rss();
    let (arrivals, arrived) = mpsc::unbounded_channel();
    subscribe_all(server, n, &arrivals).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let open = server.rss();
    // Dropping the receiver ends every subscriber task at its next message; one update
    // reaches them all, and their connections close.
    drop(arrived);
    drop(arrivals);
    publisher.send(1).await?;
    // Allocators hand freed memory back over seconds (jemalloc's decay is 10 s): the
    // same wait for every system.
    tokio::time::sleep(SETTLE_AFTER_CLOSE).await;
    let closed = server.rss();
    let per = open.saturating_sub(baseline) as f64 / n as f64 / 1024.0;
    let mib = |b: u64| format!("{:.1} MiB", b as f64 / 1048576.0);
    let mut row = Row { name: server.name, ..Row::default() };
    row.add("RSS per idle subscribed connection", format!("{per:.1} KiB"), Some(per));
    row.add("RSS before", mib(baseline), None);
    row.add("RSS with the connections open", mib(open), None);
    let back = closed as f64 / baseline.max(1) as f64;
    row.add(
        "RSS 12 s after they closed (× before)",
        format!("{} ({back:.2}×)", mib(closed)),
        Some(back),
    );
    Ok(row)
}
