//! The actix-web app and the server's lifecycle: open the store, start the hub, the ramp
//! scheduler and the guard, serve, and stop in order.

use std::future::Future;
use std::io;
use std::net::TcpListener;
use std::sync::Arc;

use std::convert::Infallible;
use std::time::Duration;

use actix_codec::Framed;
use actix_http::{h1, HttpService, Request};
use actix_service::{IntoServiceFactory, ServiceFactoryExt};
use actix_tls::accept::rustls_0_23::TlsStream;
use actix_web::dev::AppConfig;
use actix_web::{web, App, HttpRequest, HttpResponse};
use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::config::Config;
use crate::error::ApiError;
use crate::gray::guard::Guards;
use crate::gray::scheduler;
use crate::metrics::Metrics;
use crate::protect::{self, OriginPolicy};
use crate::push::hub::Hub;
use crate::routes;
use crate::state::AppState;
use crate::store::Store;

/// The actix-web application over a state.
pub fn build_app(
    state: AppState,
) -> App<
    impl actix_web::dev::ServiceFactory<
        actix_web::dev::ServiceRequest,
        Config = (),
        Response = actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    let query_errors = web::QueryConfig::default()
        .error_handler(|err, _| ApiError::BadRequest(format!("invalid query: {err}")).into());
    let path_errors = web::PathConfig::default()
        .error_handler(|err, _| ApiError::BadRequest(format!("invalid path: {err}")).into());
    App::new()
        .wrap(actix_web::middleware::from_fn(crate::middleware::serving))
        .wrap(actix_web::middleware::from_fn(protect::middleware))
        .wrap(actix_web::middleware::from_fn(crate::middleware::json_bodies))
        .wrap(actix_web::middleware::from_fn(crate::middleware::head_as_get))
        .wrap(actix_web::middleware::from_fn(crate::middleware::request_id))
        .wrap(actix_web::middleware::from_fn(protect::cors))
        .app_data(web::Data::new(state.origin_policy.clone()))
        .app_data(web::Data::new(state))
        .app_data(query_errors)
        .app_data(path_errors)
        .configure(routes::configure)
        .service(web::resource("/openapi.json").route(web::get().to(crate::openapi::serve)))
        .default_service(web::to(not_found))
}

async fn not_found(req: HttpRequest) -> HttpResponse {
    actix_web::ResponseError::error_response(&ApiError::NotFound(format!(
        "no route for {} {}",
        req.method(),
        req.path()
    )))
}

/// An accepted connection's TCP socket, whatever runs over it.
trait Accepted {
    fn tcp(&self) -> &TcpStream;
}

impl Accepted for TcpStream {
    fn tcp(&self) -> &TcpStream {
        self
    }
}

impl Accepted for TlsStream<TcpStream> {
    fn tcp(&self) -> &TcpStream {
        self.get_ref().0
    }
}

/// Bounds how long what the server sent may stay unacknowledged (TCP_USER_TIMEOUT): a
/// peer that vanished without a word (its machine gone, a cable pulled) is dropped by the
/// kernel after `timeout` of heartbeats going unanswered, even where no reply is read
/// (an event stream's client never writes back).
fn drop_vanished_peers(socket: &impl Accepted, timeout: Duration) {
    let _ = socket2::SockRef::from(socket.tcp()).set_tcp_user_timeout(Some(timeout));
}

/// Raises the soft limit on open files to the hard limit and returns it: every subscriber
/// holds a socket.
fn raise_fd_limit() -> u64 {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        limit.current = limit.maximum;
        if setrlimit(Resource::Nofile, limit).is_err() {
            limit = getrlimit(Resource::Nofile);
        }
    }
    limit.current.unwrap_or(1_048_576)
}

/// Serves on `listener` until `shutdown` resolves, then stops gracefully: subscribers
/// get a close frame, in-flight requests finish, and the writer commits what it was
/// given before this returns. `ready` is called once the store is open and requests are
/// served.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + 'static,
    ready: impl FnOnce(),
) -> io::Result<()> {
    let tokens = config
        .load_tokens()
        .map_err(io::Error::other)?
        .map(|tokens| Arc::new(crate::reload::Reloadable::new(tokens)));
    let (tls, certificate) = config.tls().map_err(io::Error::other)?.unzip();
    let metrics = Arc::new(match config.store {
        crate::config::StoreKind::Etcd => Metrics::for_etcd(),
        _ => Metrics::new(),
    });
    let reloads = crate::reload::Reloads {
        tokens: config.tokens.clone().zip(tokens.clone()),
        certificate,
        metrics: metrics.clone(),
    };
    let options = config.store_options(listener.local_addr()?).map_err(io::Error::other)?;
    let (store, feed) = Store::open(options, metrics.clone()).await.map_err(io::Error::other)?;
    let store = Arc::new(store);
    let retain = usize::try_from(config.changelog_retain).unwrap_or(usize::MAX);
    let hub = Hub::new(store.revision(), retain, metrics.clone());
    let feed_thread = hub.spawn_feed(feed)?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let origin_policy = Arc::new(OriginPolicy::new(
        listener.local_addr()?,
        &config.allowed_hosts,
        &config.allowed_origins,
    ));
    let workers = if config.workers == 0 {
        std::thread::available_parallelism().map_or(2, |n| n.get())
    } else {
        config.workers
    };
    tracing::info!(store = ?config.store, revision = store.revision(), "store opened");
    let fd_limit = raise_fd_limit();
    let subscriber_limit = config.subscriber_limit(fd_limit);
    tracing::info!(subscriber_limit, fd_limit, "connection limits");
    let state = AppState {
        subscriber_limit,
        config: Arc::new(config),
        store: store.clone(),
        hub,
        metrics,
        guards: Arc::new(Guards::default()),
        tokens,
        shutdown: stop_rx.clone(),
        origin_policy,
    };
    actix_web::rt::spawn(scheduler::run(store.clone(), stop_rx.clone()));
    actix_web::rt::spawn(crate::gray::guard::run(store.clone(), stop_rx.clone()));
    actix_web::rt::spawn(crate::requests::run_schedule(store.clone(), stop_rx.clone()));
    actix_web::rt::spawn(Arc::new(reloads).on_hangup(stop_rx.clone()));
    let local = listener.local_addr()?;
    let stopping = stop_rx.clone();
    let builder =
        actix_server::Server::build().workers(workers).disable_signals().shutdown_timeout(10);
    // One HTTP service for either transport: WebSocket upgrades get the connection itself
    // (see `push::websocket`); every other request goes through the actix-web app.
    macro_rules! http_service {
        ($socket:ty) => {{
            let upgrade_state = state.clone();
            let upgrade = actix_service::fn_service(
                move |(req, framed): (Request, Framed<$socket, h1::Codec>)| {
                    let state = upgrade_state.clone();
                    async move {
                        crate::push::websocket::upgrade(state, req, framed).await;
                        Ok::<(), Infallible>(())
                    }
                },
            );
            let app = build_app(state.clone()).into_factory().map_err(|err| err.error_response());
            let stopping = stopping.clone();
            let user_timeout = state.config.client_timeout();
            HttpService::build()
                .local_addr(local)
                .on_connect_ext(move |socket: &$socket, _| {
                    drop_vanished_peers(socket, user_timeout)
                })
                // As actix-web's `HttpServer`: 5 s for a request's head, and 1 s for a
                // client to finish sending a body the server refused before answering.
                .client_request_timeout(Duration::from_secs(5))
                .client_disconnect_timeout(Duration::from_secs(1))
                // Idle keep-alive connections close as the server stops, rather than
                // holding the shutdown until their keep-alive runs out (actix-web's
                // `HttpServer` wires the same signal).
                .graceful_shutdown_signal(move || {
                    let mut stopping = stopping.clone();
                    async move {
                        let _ = stopping.wait_for(|stop| *stop).await;
                    }
                })
                .upgrade(upgrade)
                .finish(actix_service::map_config(app, |_| AppConfig::default()))
        }};
    }
    let server = match tls {
        None => builder.listen("graycast", listener, move || http_service!(TcpStream).tcp())?,
        Some(tls) => builder.listen("graycast-tls", listener, move || {
            http_service!(TlsStream<TcpStream>).rustls_0_23((*tls).clone())
        })?,
    }
    .run();
    ready();
    let handle = server.handle();
    actix_web::rt::spawn(async move {
        shutdown.await;
        tracing::info!("shutting down");
        let _ = stop_tx.send(true);
        handle.stop(true).await;
    });
    let served = server.await;
    // Every handler is done; let the writer commit what it holds, then stop the hub.
    let stopped = actix_web::rt::task::spawn_blocking(move || {
        store.shutdown();
        drop(store);
        if feed_thread.join().is_err() {
            tracing::error!("the hub thread panicked");
        }
    })
    .await;
    if stopped.is_err() {
        tracing::error!("store shutdown panicked");
    }
    tracing::info!("stopped");
    served
}
