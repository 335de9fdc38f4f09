//! Browser-origin protection: what a web page in an operator's browser must not do.
//!
//! Two attacks reach a server that binds loopback and trusts whoever can connect:
//! - **DNS rebinding**: a page on `attacker.example` re-points its name at 127.0.0.1 and
//!   reads the API as same-origin. Requests whose `Host` is not a name this server is
//!   known by are refused, so such a page only ever talks to a server that refuses it.
//! - **Cross-site requests**: a page posts a form or opens a WebSocket to the server
//!   (neither is stopped by CORS). Mutating requests and WebSocket upgrades are refused
//!   when the browser says they are cross-site (`Sec-Fetch-Site`), or when their `Origin`
//!   is neither the server's own nor an allowed one — the rule of Go 1.25's
//!   `CrossOriginProtection`. Clients that send no `Origin` (curl, the SDK, the CLI) are
//!   not browsers and are unaffected.

use std::net::{IpAddr, SocketAddr};

use std::sync::Arc;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderMap, HeaderValue};
use actix_web::http::Method;
use actix_web::middleware::Next;
use actix_web::{web, ResponseError};

use crate::error::ApiError;

/// Middleware applying the server's [`OriginPolicy`] to every request.
pub async fn middleware(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let refused = req
        .app_data::<web::Data<Arc<OriginPolicy>>>()
        .and_then(|policy| policy.check(req.method(), req.headers()).err());
    if let Some(err) = refused {
        return Ok(req.into_response(err.error_response()));
    }
    Ok(next.call(req).await?.map_into_boxed_body())
}

/// What an allowed origin's page may send across origins (the SDKs' and providers' headers).
const CORS_HEADERS: &str = "Content-Type, Authorization, If-Match, If-None-Match, X-API-Key, \
                            Idempotency-Key, Last-Event-ID, X-Request-Id";

/// CORS for the origins of `--allowed-origins`, on every path: their preflights are answered
/// (204), and their requests' answers, errors included, say they may be read (with `ETag`
/// and `X-Request-Id` exposed). Other origins get no CORS headers, so a browser keeps their
/// pages from reading anything.
pub async fn cors(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let origin = req
        .headers()
        .get(header::ORIGIN)
        .filter(|_| {
            req.app_data::<web::Data<Arc<OriginPolicy>>>().is_some_and(|policy| {
                let origin = req.headers().get(header::ORIGIN).and_then(|v| v.to_str().ok());
                origin.is_some_and(|o| policy.allows_origin(o))
            })
        })
        .cloned();
    let Some(origin) = origin else {
        return Ok(next.call(req).await?.map_into_boxed_body());
    };
    let preflight = req.method() == Method::OPTIONS
        && req.headers().contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    let mut response = if preflight {
        let mut answer = actix_web::HttpResponse::NoContent().finish();
        let headers = answer.headers_mut();
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"),
        );
        headers
            .insert(header::ACCESS_CONTROL_ALLOW_HEADERS, HeaderValue::from_static(CORS_HEADERS));
        headers.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600"));
        req.into_response(answer)
    } else {
        next.call(req).await?.map_into_boxed_body()
    };
    let headers = response.headers_mut();
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    headers.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static("ETag, X-Request-Id"),
    );
    headers.append(header::VARY, HeaderValue::from_static("Origin"));
    Ok(response)
}

/// The hosts and origins a server accepts requests from.
#[derive(Debug, Clone)]
pub struct OriginPolicy {
    listen: SocketAddr,
    /// Extra host names (`--allowed-hosts`), lowercase, without port; `*` allows any.
    hosts: Vec<String>,
    /// Extra origins (`--allowed-origins`) such as `https://console.example.com`.
    origins: Vec<String>,
}

impl OriginPolicy {
    pub fn new(listen: SocketAddr, hosts: &[String], origins: &[String]) -> OriginPolicy {
        OriginPolicy {
            listen,
            hosts: hosts.iter().map(|h| h.trim().to_ascii_lowercase()).collect(),
            origins: origins.iter().map(|o| o.trim().trim_end_matches('/').to_owned()).collect(),
        }
    }

    /// Whether `origin` is one of `--allowed-origins`.
    pub fn allows_origin(&self, origin: &str) -> bool {
        self.origins.iter().any(|allowed| allowed == origin.trim_end_matches('/'))
    }

    /// Refuses a request a browser may have been tricked into making (403).
    pub fn check(&self, method: &Method, headers: &HeaderMap) -> Result<(), ApiError> {
        let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
        if let Some(host) = host {
            if !self.host_allowed(host) {
                return Err(ApiError::Forbidden(format!(
                    "host {host:?} is not a name of this server; add it to --allowed-hosts"
                )));
            }
        }
        let upgrade = headers
            .get(header::UPGRADE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
        let safe = matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS);
        if safe && !upgrade {
            return Ok(());
        }
        let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
        if origin.is_some_and(|o| self.origins.iter().any(|allowed| allowed == o)) {
            return Ok(());
        }
        let fetch_site = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok());
        let refused = match fetch_site {
            // The browser's own word: only same-origin requests and ones the user typed.
            Some(site) => !matches!(site, "same-origin" | "none"),
            None => origin.is_some_and(|origin| !same_host(origin, host)),
        };
        if refused {
            return Err(ApiError::Forbidden(format!(
                "cross-origin request refused (Origin {}, Sec-Fetch-Site {}); a page of another \
                 site may not change configuration or subscribe; allow its origin with \
                 --allowed-origins",
                origin.unwrap_or("absent"),
                fetch_site.unwrap_or("absent"),
            )));
        }
        Ok(())
    }

    fn host_allowed(&self, host: &str) -> bool {
        let name = host_name(host).to_ascii_lowercase();
        if matches!(name.as_str(), "localhost" | "127.0.0.1" | "[::1]")
            || self.hosts.iter().any(|h| h == "*" || *h == name)
        {
            return true;
        }
        // An address literal cannot be rebound, so any address of this server is fine:
        // the one it listens on, or every one when it listens on all interfaces.
        match name.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>() {
            Ok(ip) => self.listen.ip().is_unspecified() || ip == self.listen.ip(),
            Err(_) => false,
        }
    }
}

/// The name part of a `Host` header value: `example.com:8080` → `example.com`,
/// `[::1]:8080` → `[::1]`.
fn host_name(host: &str) -> &str {
    let host = host.trim();
    if host.starts_with('[') {
        return host.find(']').map_or(host, |end| &host[..=end]);
    }
    host.rsplit_once(':').map_or(host, |(name, _)| name)
}

/// Whether an `Origin` (`scheme://host[:port]`) names the same host and port as `Host`.
fn same_host(origin: &str, host: Option<&str>) -> bool {
    let Some(host) = host else { return false };
    let authority = origin.split_once("://").map_or("", |(_, rest)| rest);
    let (origin_name, origin_port) = split_port(authority, origin.starts_with("https://"));
    let (host_name, host_port) = split_port(host, origin.starts_with("https://"));
    !origin_name.is_empty()
        && origin_name.eq_ignore_ascii_case(host_name)
        && origin_port == host_port
}

fn split_port(authority: &str, https: bool) -> (&str, u16) {
    let name = host_name(authority);
    let default = if https { 443 } else { 80 };
    let port = authority[name.len()..].strip_prefix(':').and_then(|p| p.parse().ok());
    (name, port.unwrap_or(default))
}

#[cfg(test)]
mod tests {
    use actix_web::test::TestRequest;

    use super::*;

    fn policy() -> OriginPolicy {
        OriginPolicy::new(
            "127.0.0.1:8080".parse().unwrap(),
            &["config.internal".into()],
            &["https://console.example.com".into()],
        )
    }

    fn check(method: Method, headers: &[(&str, &str)]) -> bool {
        let mut req = TestRequest::default().method(method);
        for (name, value) in headers {
            req = req.insert_header((*name, *value));
        }
        let req = req.to_http_request();
        policy().check(req.method(), req.headers()).is_ok()
    }

    #[test]
    fn hosts() {
        for (host, allowed) in [
            ("127.0.0.1:8080", true),
            ("localhost:8080", true),
            ("LOCALHOST", true),
            ("[::1]:8080", true),
            ("config.internal:443", true),
            ("attacker.example:8080", false),
            ("10.0.0.5:8080", false),
            ("localhost.attacker.example", false),
        ] {
            assert_eq!(check(Method::GET, &[("host", host)]), allowed, "{host}");
        }
        let open = OriginPolicy::new("0.0.0.0:8080".parse().unwrap(), &[], &[]);
        assert!(open.host_allowed("10.0.0.5:8080"), "any address of a server on all interfaces");
        assert!(!open.host_allowed("evil.example"));
    }

    #[test]
    fn origins() {
        let host = ("host", "127.0.0.1:8080");
        for (method, headers, allowed) in [
            (Method::PUT, vec![host], true),
            (Method::PUT, vec![host, ("origin", "http://127.0.0.1:8080")], true),
            (Method::PUT, vec![host, ("origin", "http://127.0.0.1:9999")], false),
            (Method::POST, vec![host, ("origin", "https://evil.example")], false),
            (Method::POST, vec![host, ("origin", "null")], false),
            (Method::POST, vec![host, ("origin", "https://console.example.com")], true),
            (Method::POST, vec![host, ("sec-fetch-site", "cross-site")], false),
            (Method::POST, vec![host, ("sec-fetch-site", "same-site")], false),
            (Method::POST, vec![host, ("sec-fetch-site", "same-origin")], true),
            (Method::GET, vec![host, ("origin", "https://evil.example")], true),
            (
                Method::GET,
                vec![host, ("upgrade", "websocket"), ("origin", "https://evil.example")],
                false,
            ),
            (
                Method::GET,
                vec![host, ("upgrade", "websocket"), ("origin", "http://127.0.0.1:8080")],
                true,
            ),
        ] {
            assert_eq!(check(method.clone(), &headers), allowed, "{method} {headers:?}");
        }
    }
}
