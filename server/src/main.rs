//! The `graycast` server binary: parse the configuration, set up logs, serve.

use std::io::{IsTerminal as _, Write as _};
use std::net::TcpListener;
use std::process::ExitCode;

use graycast_server::config::file::{self as config_file, LoadError};
use graycast_server::LogFormat;
use tracing_subscriber::EnvFilter;

/// jemalloc with background threads returns the memory of closed connections to the
/// system within seconds; glibc's allocator keeps it (BENCHMARKS.md, `compare conns`).
#[cfg(all(target_os = "linux", not(target_env = "musl")))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let config_file::Loaded { config, overridden } = match config_file::load(std::env::args_os()) {
        Ok(loaded) => loaded,
        Err(LoadError::Usage(err)) => err.exit(),
        Err(LoadError::File(reason)) => {
            eprintln!("graycast: {reason}");
            return ExitCode::from(2);
        }
    };
    let logs = tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("GRAYCAST_LOG").unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr);
    match config.log_format {
        LogFormat::Json => logs.json().with_current_span(true).with_span_list(false).init(),
        // Colours only for a person at a terminal, never in a redirected log.
        LogFormat::Text => logs
            .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none())
            .init(),
    }
    for line in overridden {
        tracing::info!("{line}");
    }
    let checked = config
        .validate()
        .and_then(|()| config.load_tokens().map(|_| ()))
        .and_then(|()| config.tls().map(|_| ()));
    if let Err(reason) = checked {
        eprintln!("graycast: {reason}");
        return ExitCode::from(2);
    }
    let listener = match TcpListener::bind(config.listen) {
        Ok(listener) => listener,
        Err(err) => {
            eprintln!("graycast: cannot listen on {}: {err}", config.listen);
            return ExitCode::FAILURE;
        }
    };
    let url = match listener.local_addr() {
        Ok(addr) if config.tls_cert.is_some() => format!("https://{addr}"),
        Ok(addr) => format!("http://{addr}"),
        Err(err) => {
            eprintln!("graycast: cannot read the bound address: {err}");
            return ExitCode::FAILURE;
        }
    };
    // The socket is bound, so connections made meanwhile wait in its backlog; the line
    // scripts wait for comes once the store is open and requests are served.
    let announce = move || {
        println!("graycast listening on {url}");
        let _ = std::io::stdout().flush();
    };
    let served = actix_web::rt::System::new().block_on(graycast_server::run(
        config,
        listener,
        shutdown_signal(),
        announce,
    ));
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("graycast: {err}");
            ExitCode::FAILURE
        }
    }
}

/// Resolves on ctrl-c or SIGTERM.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
