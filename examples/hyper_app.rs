//! Lenscap in a plain hyper 1 server, through hyper-util's `TowerToHyperService`.
//!
//! ```sh
//! cargo run --example hyper_app           # listens on 127.0.0.1:3001
//! curl -i http://127.0.0.1:3001/photos/1.jpg -A 'Wget/1.21.3'   # 403
//! ```

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use lenscap::{LenscapLayer, PeerAddr, Policy};
use tower::ServiceBuilder;

async fn gallery(request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let body = if request.uri().path().ends_with(".jpg") {
        Bytes::from_static(b"jpeg bytes")
    } else {
        Bytes::from_static(b"<!doctype html><title>Gallery</title><img src=\"/photos/1.jpg\">")
    };
    Ok(Response::new(Full::new(body)))
}

/// Serves connections from `listener` until the task is dropped.
pub async fn serve(listener: tokio::net::TcpListener, layer: LenscapLayer) -> std::io::Result<()> {
    loop {
        let (stream, peer) = listener.accept().await?;
        let service = ServiceBuilder::new()
            // Lenscap needs the peer address; hyper leaves that to the server loop.
            .map_request(move |mut request: Request<Incoming>| {
                request.extensions_mut().insert(PeerAddr(peer));
                request
            })
            .layer(layer.clone())
            .service_fn(gallery);
        tokio::spawn(async move {
            let connection = auto::Builder::new(TokioExecutor::new());
            if let Err(error) = connection
                .serve_connection(TokioIo::new(stream), TowerToHyperService::new(service))
                .await
            {
                eprintln!("connection from {peer}: {error}");
            }
        });
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 3001))).await?;
    println!(
        "hyper app behind Lenscap on http://{}",
        listener.local_addr()?
    );
    serve(listener, LenscapLayer::new(Policy::embedded()?)).await?;
    Ok(())
}
