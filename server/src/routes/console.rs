//! The web console: the files of `web/`, embedded at compile time (see `build.rs`) and
//! served at `/`. For work on the console, `GRAYCAST_WEB_DIR=web` serves them from disk
//! instead, read on every request, so a reload shows an edit without a rebuild (the SDK
//! under `/sdk/` is then read from `client-js/` beside that folder).

use std::path::{Component, Path, PathBuf};

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};

/// (URL path, content type, body) of every file of the console.
const FILES: &[(&str, &str, &[u8])] = include!(concat!(env!("OUT_DIR"), "/console_files.rs"));

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/").route(web::get().to(file)));
    for (path, _, _) in FILES {
        cfg.service(web::resource(*path).route(web::get().to(file)));
    }
}

/// The folder `GRAYCAST_WEB_DIR` names, if set.
fn web_dir() -> Option<PathBuf> {
    std::env::var_os("GRAYCAST_WEB_DIR").map(PathBuf::from)
}

async fn file(req: HttpRequest) -> HttpResponse {
    let path = match req.path() {
        "/" => "/index.html",
        other => other,
    };
    let Some((_, content_type, embedded)) = FILES.iter().find(|(p, _, _)| *p == path) else {
        return HttpResponse::NotFound().finish();
    };
    let body = match web_dir() {
        // Only the embedded file names are served, so nothing else on disk can be reached.
        Some(dir) => {
            let file = match path.strip_prefix("/sdk/") {
                Some("graycast.js") => dir.join("../client-js/src/graycast.js"),
                Some(_) => dir.join("../client-js/dist/graycast.min.js"),
                None => {
                    let relative = Path::new(path.trim_start_matches('/')).to_path_buf();
                    if relative.components().any(|c| !matches!(c, Component::Normal(_))) {
                        return HttpResponse::NotFound().finish();
                    }
                    dir.join(relative)
                }
            };
            match web::block(move || std::fs::read(file)).await {
                Ok(Ok(bytes)) => bytes,
                _ => embedded.to_vec(),
            }
        }
        None => embedded.to_vec(),
    };
    HttpResponse::Ok()
        .content_type(*content_type)
        // The files change with the binary; a reload must see the new ones.
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header(("content-security-policy", "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'"))
        .insert_header(("x-content-type-options", "nosniff"))
        .body(body)
}
