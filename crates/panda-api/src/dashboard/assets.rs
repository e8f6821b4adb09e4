//! The stylesheet and the script, compiled into the binary and served under `/assets/`.

use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use rust_embed::RustEmbed;

use super::Page;

/// The stylesheet and the script, compiled into the binary.
#[derive(RustEmbed)]
#[folder = "assets/"]
struct Assets;

pub(super) async fn asset(Path(file): Path<String>) -> Response {
    let Some(content) = Assets::get(&file) else {
        return Page::error(StatusCode::NOT_FOUND, "No such file.", "").into_response();
    };
    let kind = match file.rsplit('.').next() {
        Some("css") => "text/css; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("svg") => "image/svg+xml",
        _ => "application/octet-stream",
    };
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        content.data.into_owned(),
    )
        .into_response()
}
