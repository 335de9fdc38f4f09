//! The web console: static files from `web/`, embedded at compile time and served at `/`.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};

/// (path, content type, body) of every file of the console.
const FILES: &[(&str, &str, &str)] = &[
    ("/", "text/html; charset=utf-8", include_str!("../../../web/index.html")),
    ("/index.html", "text/html; charset=utf-8", include_str!("../../../web/index.html")),
    ("/app.js", "text/javascript; charset=utf-8", include_str!("../../../web/app.js")),
    ("/rollout.js", "text/javascript; charset=utf-8", include_str!("../../../web/rollout.js")),
    ("/style.css", "text/css; charset=utf-8", include_str!("../../../web/style.css")),
];

pub fn configure(cfg: &mut web::ServiceConfig) {
    for (path, _, _) in FILES {
        cfg.service(web::resource(*path).route(web::get().to(file)));
    }
}

async fn file(req: HttpRequest) -> HttpResponse {
    match FILES.iter().find(|(path, _, _)| *path == req.path()) {
        Some((_, content_type, body)) => HttpResponse::Ok()
            .content_type(*content_type)
            // The files change with the binary; a reload must see the new ones.
            .insert_header((header::CACHE_CONTROL, "no-cache"))
            .insert_header(("content-security-policy", "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'"))
            .insert_header(("x-content-type-options", "nosniff"))
            .body(*body),
        None => HttpResponse::NotFound().finish(),
    }
}
