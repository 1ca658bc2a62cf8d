//! Lenscap in an axum 0.8 app: one `.layer(...)` line.
//!
//! ```sh
//! cargo run --example axum_app            # listens on 127.0.0.1:3000
//! curl -i http://127.0.0.1:3000/photos/terrace.jpg -A 'Mozilla/5.0 (compatible; GPTBot/1.2)'   # 403
//! ```

use std::net::SocketAddr;

use axum::Router;
use axum::extract::{Extension, Path};
use axum::http::header;
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use lenscap::{LenscapLayer, Policy, Verdict};

/// The app: a page and its photos, behind Lenscap.
pub fn app(policy: Policy) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/photos/{name}", get(photo))
        .layer(LenscapLayer::new(policy))
}

async fn index(Extension(verdict): Extension<Verdict>) -> Html<String> {
    Html(format!(
        "<!doctype html><title>The Crown</title><h1>Terrace night</h1>\
         <img src=\"/photos/terrace.jpg\"><p>You are seen as: {}</p>",
        verdict.category
    ))
}

async fn photo(Path(name): Path<String>) -> impl IntoResponse {
    // A real app would read the file; the bytes don't matter here.
    (
        [(header::CONTENT_TYPE, "image/jpeg")],
        format!("jpeg bytes of {name}"),
    )
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    println!(
        "axum app behind Lenscap on http://{}",
        listener.local_addr()?
    );
    // Connect info lets Lenscap see each client's address.
    axum::serve(
        listener,
        app(Policy::embedded()?).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await?;
    Ok(())
}
