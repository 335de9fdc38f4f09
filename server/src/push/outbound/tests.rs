//! The queue's ordering, budget and direct-write rules.

use super::*;

fn change(revision: Revision, size: usize) -> Arc<Pushed> {
    Arc::new(Pushed {
        revision,
        namespace: "ns".into(),
        key: "k".into(),
        frame: Bytes::from(format!("{revision:0>width$}", width = size)),
        json_at: 0,
        committed_at: Instant::now(),
    })
}

fn drain(out: &Outbound) -> Vec<String> {
    let mut all = Vec::new();
    loop {
        let chunk = out.next_write();
        if chunk.is_empty() {
            return all;
        }
        let n: usize = chunk.iter().map(Bytes::len).sum();
        all.extend(
            chunk.iter().map(|b| String::from_utf8_lossy(b).trim_start_matches('0').to_owned()),
        );
        out.advance(n);
    }
}

/// An event stream carries the same shared JSON as a WebSocket, in event lines.
#[test]
fn an_event_stream_wraps_the_shared_json_in_events() {
    let out = Outbound::new(1000, Transport::EventStream);
    let json = vec![Bytes::from_static(b"{\"type\":\"snapshot\"}")];
    out.push_snapshot(&Arc::new(crate::push::wire::SnapshotMessage { revision: 4, json }));
    out.go_live(4);
    let framed = crate::push::frame::text(b"{\"type\":\"change\"}");
    out.push_change(
        &Arc::new(Pushed {
            revision: 5,
            namespace: "ns".into(),
            key: "k".into(),
            json_at: crate::push::frame::header_len(&framed),
            frame: framed,
            committed_at: Instant::now(),
        }),
        false,
    );
    let text: String = out.next_write().iter().map(|b| String::from_utf8_lossy(b)).collect();
    assert_eq!(
        text,
        "event: snapshot\nid: 4\ndata: {\"type\":\"snapshot\"}\n\n\
         event: change\nid: 5\ndata: {\"type\":\"change\"}\n\n"
    );
}

/// While nothing is queued the hub writes a change straight into the socket; what the
/// socket does not take is queued, in order, for the session.
#[tokio::test]
async fn the_hub_writes_straight_into_an_idle_socket_and_queues_what_does_not_fit() {
    use tokio::io::AsyncReadExt as _;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("addr");
    let mut client = tokio::net::TcpStream::connect(address).await.expect("connect");
    let (server, _) = listener.accept().await.expect("accept");
    socket2::SockRef::from(&server).set_send_buffer_size(4096).expect("a small buffer");
    server.writable().await.expect("writable");
    let out = Outbound::new(1 << 30, Transport::WebSocket);
    out.write_directly_to(Arc::new(server));
    out.go_live(0);
    assert!(out.push_change(&change(1, 10), true).is_some(), "written whole, right away");
    assert!(!out.has_output());
    let mut got = [0u8; 10];
    client.read_exact(&mut got).await.expect("the change arrives");
    assert_eq!(&got, b"0000000001");
    // Not direct (the hub is behind): queued for the session even though idle.
    assert!(out.push_change(&change(2, 10), false).is_none());
    assert!(out.has_output());
    assert_eq!(drain(&out), ["2"]);
    // The client reads nothing more: the socket fills, the rest is queued in order.
    let mut revision = 3;
    while !out.has_output() {
        out.push_change(&change(revision, 60 * 1024), true);
        revision += 1;
    }
    out.push_change(&change(revision, 10), true);
    assert_eq!(out.sent(), revision);
    out.close();
    assert!(out.state().direct.is_none(), "the handle goes with the connection");
}

#[test]
fn changes_that_wait_during_a_catch_up_follow_it_without_repeats() {
    let out = Outbound::new(1000, Transport::WebSocket);
    out.push_change(&change(4, 10), false);
    out.push_change(&change(5, 10), false);
    out.push(Bytes::from_static(b"snapshot@4"), true);
    out.go_live(4);
    out.push_change(&change(5, 10), false);
    out.push_change(&change(6, 10), false);
    assert_eq!(drain(&out), ["snapshot@4", "5", "6"]);
    assert_eq!(out.sent(), 6);
    assert_eq!(out.counted(), 0);
}

#[test]
fn over_the_budget_a_subscriber_lags_and_resyncs_keeping_the_frame_begun() {
    let out = Outbound::new(25, Transport::WebSocket);
    out.go_live(0);
    out.push_change(&change(1, 10), false);
    out.push_change(&change(2, 10), false);
    let first = out.next_write();
    out.advance(3); // part of change 1 is on the wire
    assert!(!first.is_empty());
    out.push_change(&change(3, 10), false);
    assert!(out.lagged(), "30 bytes over a budget of 25");
    out.begin_resync();
    assert_eq!(out.counted(), 7, "the rest of change 1 stays; change 2 is dropped");
    out.push_change(&change(4, 10), false); // waits aside during the resync
    out.push(Bytes::from_static(b"snapshot@4"), true);
    out.go_live(4);
    let rest: Vec<String> = drain(&out);
    assert_eq!(out.counted(), 0);
    assert_eq!(rest, ["1", "snapshot@4"]);
    assert!(!out.lagged());
}

#[test]
fn a_resync_drops_older_snapshots_not_begun() {
    let out = Outbound::new(25, Transport::WebSocket);
    out.push(Bytes::from_static(b"snapshot@1"), true);
    out.go_live(1);
    out.push_change(&change(2, 30), false);
    assert!(out.lagged());
    out.begin_resync();
    assert!(!out.has_output(), "the snapshot not begun is dropped with the changes");
}

#[test]
fn a_resync_finishes_the_snapshot_on_the_wire() {
    let out = Outbound::new(25, Transport::WebSocket);
    let json = vec![Bytes::from_static(b"body1"), Bytes::from_static(b"body2")];
    out.push_snapshot(&Arc::new(crate::push::wire::SnapshotMessage { revision: 1, json }));
    out.go_live(1);
    out.advance(2 + 5); // the header and the first piece of the payload went out
    out.push_change(&change(2, 30), false);
    out.begin_resync();
    assert_eq!(drain(&out), ["body2"], "the frame on the wire is finished");
}

#[test]
fn progress_is_queued_only_when_idle() {
    let out = Outbound::new(1000, Transport::WebSocket);
    out.go_live(3);
    let frame = |r: Revision| Bytes::from(format!("progress@{r}"));
    assert!(out.push_progress_if_idle(3, 7, frame));
    assert_eq!(out.sent(), 7);
    out.push_change(&change(8, 10), false);
    assert!(!out.push_progress_if_idle(7, 8, frame), "a change went out since");
    assert_eq!(drain(&out), ["progress@7", "8"]);
}
