//! Embeds the web console: every file under `web/` except its tests becomes an entry of
//! `console_files.rs` (URL path, content type, bytes), so a new module needs no edit here.
//! The JavaScript SDK the console is built on (`client-js/`) is served beside it under
//! `/sdk/`: its readable module and its minified build.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

fn main() {
    let web = Path::new(env!("CARGO_MANIFEST_DIR")).join("../web");
    println!("cargo:rerun-if-changed={}", web.display());
    let mut files = Vec::new();
    collect(&web, &web, &mut files);
    let sdk = Path::new(env!("CARGO_MANIFEST_DIR")).join("../client-js");
    for (url, file) in SDK_FILES {
        let path = sdk.join(file);
        println!("cargo:rerun-if-changed={}", path.display());
        files.push((url.to_string(), path.canonicalize().unwrap_or(path)));
    }
    files.sort();
    let mut out = String::from("&[\n");
    for (url, path) in &files {
        println!("cargo:rerun-if-changed={}", path.display());
        let _ = writeln!(
            out,
            "    ({url:?}, {:?}, include_bytes!({:?}) as &[u8]),",
            content_type(path),
            path.display().to_string()
        );
    }
    out.push(']');
    let dest = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    std::fs::write(dest.join("console_files.rs"), out).expect("OUT_DIR is writable");
}

/// (URL path, path under `client-js/`) of the SDK files the server serves.
const SDK_FILES: &[(&str, &str)] =
    &[("/sdk/graycast.js", "src/graycast.js"), ("/sdk/graycast.min.js", "dist/graycast.min.js")];

/// Files under `dir` as (URL path, file path); directories are watched for new files.
fn collect(root: &Path, dir: &Path, files: &mut Vec<(String, PathBuf)>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || (dir == root && name == "tests") {
            continue;
        }
        if path.is_dir() {
            println!("cargo:rerun-if-changed={}", path.display());
            collect(root, &path, files);
        } else if content_type(&path) != "application/octet-stream" {
            let relative = path.strip_prefix(root).expect("under the root");
            let url = format!("/{}", relative.to_string_lossy().replace('\\', "/"));
            files.push((url, path.canonicalize().unwrap_or(path)));
        }
    }
}

fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()) {
        Some("html") => "text/html; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        Some("json") => "application/json",
        _ => "application/octet-stream",
    }
}
