//! REST requests by method, route template and status class, and their time to the answer's
//! head. The route is the template that matched (`/v1/configs/{namespace}/{key}`), never the
//! path itself, and an unknown method counts as `other`: no request can add label values.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Requests {
    method: &'static str,
    route: String,
    class: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Route {
    route: String,
}

fn request_buckets() -> Histogram {
    // 0.25 ms to about 8 s.
    Histogram::new(exponential_buckets(0.000_25, 2.0, 16))
}

/// The REST request metrics.
pub(super) struct HttpMetrics {
    requests: Family<Requests, Counter>,
    durations: Family<Route, Histogram, fn() -> Histogram>,
}

impl HttpMetrics {
    pub(super) fn register(registry: &mut Registry) -> HttpMetrics {
        let requests = Family::<Requests, Counter>::default();
        registry.register(
            "graycast_http_requests",
            "REST requests answered, by method, route template (none: no route matched) and status class (2xx, 3xx, 4xx, 5xx)",
            requests.clone(),
        );
        let durations = Family::<Route, Histogram, fn() -> Histogram>::new_with_constructor(
            request_buckets as fn() -> Histogram,
        );
        registry.register(
            "graycast_http_request_duration_seconds",
            "From a REST request's arrival to its answer's head (an event stream: to its first bytes), by route template",
            durations.clone(),
        );
        HttpMetrics { requests, durations }
    }
}

/// The label of a request method: the methods the API has, else `other`.
fn method_label(method: &str) -> &'static str {
    const KNOWN: [&str; 7] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];
    KNOWN.into_iter().find(|known| *known == method).unwrap_or("other")
}

/// The label of a status code: its class.
fn class_label(status: u16) -> &'static str {
    match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

/// A route's pattern without the patterns of its segments: `/v1/configs/{ns:[^/]*}` is
/// `/v1/configs/{ns}`.
fn template(pattern: &str) -> String {
    let mut out = String::with_capacity(pattern.len());
    let mut depth = 0usize;
    let mut skipping = false;
    for c in pattern.chars() {
        match c {
            '{' => {
                depth += 1;
                if depth == 1 {
                    skipping = false;
                    out.push(c);
                    continue;
                }
            }
            '}' => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    skipping = false;
                    out.push(c);
                    continue;
                }
            }
            ':' if depth == 1 => skipping = true,
            _ => {}
        }
        if !skipping {
            out.push(c);
        }
    }
    out
}

impl super::Metrics {
    /// A REST request answered with `status` after `elapsed`; `route` is the template that
    /// matched it, if any.
    pub fn record_http(&self, method: &str, route: Option<String>, status: u16, elapsed: Duration) {
        let route = route.map_or_else(|| "none".to_owned(), |route| template(&route));
        let labels = Requests {
            method: method_label(method),
            route: route.clone(),
            class: class_label(status),
        };
        self.http.requests.get_or_create(&labels).inc();
        self.http.durations.get_or_create(&Route { route }).observe(elapsed.as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_bounded() {
        assert_eq!(method_label("PUT"), "PUT");
        assert_eq!(method_label("BREW"), "other");
        assert_eq!(class_label(204), "2xx");
        assert_eq!(class_label(503), "5xx");
        assert_eq!(class_label(999), "5xx");
        assert_eq!(template("/v1/configs/{ns:[^/]*}/{key:[^/]{1,3}}"), "/v1/configs/{ns}/{key}");
        assert_eq!(template("/healthz"), "/healthz");
        assert_eq!(template("/v1/gray/{ns}/{key}"), "/v1/gray/{ns}/{key}");
    }
}
