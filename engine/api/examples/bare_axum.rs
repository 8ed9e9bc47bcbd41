//! The cache-hit baseline of `scripts/bench-http.sh`: the smallest axum server
//! that answers every GET with the same bytes (the body of a Quarry cache hit,
//! read from a file) and the same content type. Quarry's hit path is this plus
//! its own work (routing, key check, parameter validation, cache key, lookup,
//! headers), so the ratio of the two in one run is that work's price.
//!
//!     cargo run --release -p quarry-api --example bare_axum -- 127.0.0.1:18482 body.json

use axum::http::header;
use axum::Router;
use bytes::Bytes;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(addr), Some(file)) = (args.next(), args.next()) else {
        return Err("usage: bare_axum ADDR BODY_FILE".into());
    };
    let body = Bytes::from(std::fs::read(&file)?);
    let app = Router::new().fallback(move || {
        let body = body.clone();
        async move { ([(header::CONTENT_TYPE, "application/json")], body) }
    });
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    axum::serve(listener, app).await?;
    Ok(())
}
