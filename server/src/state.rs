//! The state every handler and session shares, and who is calling: one answer to "may
//! this caller do this", used by REST, the WebSocket and server-sent events alike.

use std::sync::Arc;

use actix_web::HttpRequest;
use tokio::sync::watch;

use graycast_protocol::ws::ALL_NAMESPACES;

use crate::auth::{self, Access, Principal, Role, Tokens};
use crate::config::Config;
use crate::error::ApiError;
use crate::gray::guard::Guards;
use crate::metrics::Metrics;
use crate::protect::OriginPolicy;
use crate::push::hub::Hub;
use crate::store::Store;

/// Recorded as `updated_by` for changes made without a token.
pub const ANONYMOUS: &str = "anonymous";

/// Everything a handler or session needs; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub store: Arc<Store>,
    pub hub: Arc<Hub>,
    pub metrics: Arc<Metrics>,
    /// Outcome counts of running gray releases.
    pub guards: Arc<Guards>,
    /// The access tokens; `None` when the server is open (loopback only).
    pub tokens: Option<Arc<crate::reload::Reloadable<Tokens>>>,
    /// Turns true when the server starts shutting down.
    pub shutdown: watch::Receiver<bool>,
    /// Which hosts and origins browsers may reach the server from.
    pub origin_policy: Arc<OriginPolicy>,
    /// Most WebSocket connections served at once.
    pub subscriber_limit: usize,
}

/// Who is calling, as the token presented says.
#[derive(Clone, Debug)]
pub enum Caller {
    /// Anyone: the server has no tokens (it serves loopback only).
    Open,
    /// Nobody yet: the server has tokens and none was presented (a WebSocket may still
    /// send an `auth` message).
    Unknown,
    /// The holder of a valid token.
    Token(Arc<Principal>),
}

impl AppState {
    /// Who presents `secret` (`None`: nothing was presented); 401 for a secret that is no
    /// token's. The one token check of REST, the WebSocket and server-sent events.
    pub fn identify(&self, secret: Option<&str>) -> Result<Caller, ApiError> {
        Caller::presenting(self.tokens().as_deref(), secret)
    }

    /// The access tokens as last loaded (SIGHUP reloads them); `None` on an open server.
    pub fn tokens(&self) -> Option<Arc<Tokens>> {
        self.tokens.as_ref().map(|tokens| tokens.get())
    }
}

impl Caller {
    /// Who presents `secret` to a server with `tokens` (none: an open server).
    pub fn presenting(tokens: Option<&Tokens>, secret: Option<&str>) -> Result<Caller, ApiError> {
        match (tokens, secret) {
            (None, _) => Ok(Caller::Open),
            (Some(_), None) => Ok(Caller::Unknown),
            (Some(tokens), Some(secret)) => tokens
                .authenticate(secret)
                .map(Caller::Token)
                .ok_or_else(|| ApiError::Unauthorized("the access token is not valid".into())),
        }
    }

    /// The token's holder, if a token was presented.
    pub fn principal(&self) -> Option<&Arc<Principal>> {
        match self {
            Caller::Token(principal) => Some(principal),
            Caller::Open | Caller::Unknown => None,
        }
    }

    /// The name recorded as `updated_by` for what this caller changes.
    pub fn name(&self) -> String {
        self.principal().map_or_else(|| ANONYMOUS.to_owned(), |p| p.name.clone())
    }

    /// Refuses a caller that presented no token to a server that has tokens (401).
    pub fn identified(self) -> Result<Caller, ApiError> {
        match self {
            Caller::Unknown => Err(ApiError::Unauthorized(
                "this server requires an access token: send Authorization: Bearer <token> \
                 (on /v1/watch and /v1/events also ?token=, or an auth message on the WebSocket)"
                    .into(),
            )),
            known => Ok(known),
        }
    }

    /// Whether this caller may have `access` to `namespace` (server-wide resources, for
    /// admins only, when `None`): the one answer every transport gives.
    pub fn may(&self, access: Access, namespace: Option<&str>) -> Result<(), ApiError> {
        let principal = match self.clone().identified()? {
            Caller::Token(principal) => principal,
            Caller::Open | Caller::Unknown => return Ok(()),
        };
        let allowed = match namespace {
            Some(namespace) => principal.can(access, namespace),
            None => principal.role == Role::Admin,
        };
        if allowed {
            return Ok(());
        }
        let what =
            namespace.map_or("server-wide resources".to_owned(), |n| format!("namespace {n:?}"));
        let verb = match access {
            Access::Write => "change",
            Access::Report => "report outcomes in (reports need the report, write or admin role)",
            Access::Read => "read",
        };
        Err(ApiError::Forbidden(format!("token {:?} may not {verb} {what}", principal.name)))
    }

    /// Whether this caller may subscribe to `namespaces`: read each of them, or `*`, which
    /// any identified caller may (it follows what the caller may read).
    pub fn may_subscribe(&self, namespaces: &[String]) -> Result<(), ApiError> {
        self.clone().identified()?;
        for namespace in namespaces.iter().filter(|n| *n != ALL_NAMESPACES) {
            self.may(Access::Read, Some(namespace))?;
        }
        Ok(())
    }
}

/// Checks that a request may have `access` to `namespace` (server-wide resources when
/// `None`) and names its caller, as recorded in `updated_by`.
pub fn authorize(
    state: &AppState,
    req: &HttpRequest,
    access: Access,
    namespace: Option<&str>,
) -> Result<String, ApiError> {
    let caller = state.identify(auth::bearer(req.headers()))?;
    caller.may(access, namespace)?;
    Ok(caller.name())
}

/// The caller a request's token names: `None` on an open server; 401 when the server has
/// tokens and the request presents none or an unknown one.
pub fn caller(state: &AppState, req: &HttpRequest) -> Result<Option<Arc<Principal>>, ApiError> {
    let caller = state.identify(auth::bearer(req.headers()))?.identified()?;
    Ok(caller.principal().cloned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(
        tokens: Option<&Tokens>,
        secret: Option<&str>,
        access: Access,
        namespace: Option<&str>,
    ) -> Result<Option<Arc<Principal>>, ApiError> {
        let caller = Caller::presenting(tokens, secret)?;
        caller.may(access, namespace)?;
        Ok(caller.principal().cloned())
    }

    #[test]
    fn roles_and_namespaces() {
        let tokens = crate::auth::tests::tokens();
        let t = Some(&tokens);
        assert!(check(t, Some("s3cret-deploy"), Access::Write, Some("payments-eu")).is_ok());
        assert!(matches!(
            check(t, Some("s3cret-deploy"), Access::Read, Some("other")),
            Err(ApiError::Forbidden(_))
        ));
        assert!(matches!(
            check(t, Some("s3cret-read"), Access::Write, Some("search")),
            Err(ApiError::Forbidden(_))
        ));
        assert!(check(t, Some("s3cret-read"), Access::Read, Some("search")).is_ok());
        assert!(matches!(
            check(t, Some("s3cret-read"), Access::Report, Some("search")),
            Err(ApiError::Forbidden(_))
        ));
        assert!(check(t, Some("s3cret-report"), Access::Report, Some("payments")).is_ok());
        assert!(check(t, Some("s3cret-report"), Access::Read, Some("payments")).is_ok());
        assert!(matches!(
            check(t, Some("s3cret-report"), Access::Write, Some("payments")),
            Err(ApiError::Forbidden(_))
        ));
        assert!(check(t, Some("s3cret-deploy"), Access::Report, Some("payments")).is_ok());
        assert!(matches!(
            check(t, Some("s3cret-read"), Access::Read, None),
            Err(ApiError::Forbidden(_))
        ));
        assert_eq!(
            check(t, Some("s3cret-admin"), Access::Read, None).unwrap().unwrap().name,
            "root"
        );
        assert!(matches!(
            check(t, Some("nope"), Access::Read, Some("x")),
            Err(ApiError::Unauthorized(_))
        ));
        assert!(matches!(check(t, None, Access::Read, Some("x")), Err(ApiError::Unauthorized(_))));
        assert!(check(None, None, Access::Write, None).unwrap().is_none(), "no token file: open");
    }

    #[test]
    fn subscriptions_need_a_token_and_read_access() {
        let tokens = crate::auth::tests::tokens();
        let names = |n: &[&str]| n.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let reader = Caller::presenting(Some(&tokens), Some("s3cret-deploy")).unwrap();
        assert!(reader.may_subscribe(&names(&["search", "payments-eu"])).is_ok());
        assert!(reader.may_subscribe(&names(&["*"])).is_ok());
        assert!(matches!(reader.may_subscribe(&names(&["x"])), Err(ApiError::Forbidden(_))));
        let nobody = Caller::presenting(Some(&tokens), None).unwrap();
        assert!(matches!(nobody.may_subscribe(&names(&["*"])), Err(ApiError::Unauthorized(_))));
        assert!(Caller::Open.may_subscribe(&names(&["anything"])).is_ok());
    }
}
