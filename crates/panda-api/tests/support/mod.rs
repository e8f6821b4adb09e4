//! The API and dashboard served over HTTP from a real store (SQLite unless a test picks), for
//! the tests.
// Each test binary compiles this module and uses a part of it.
#![allow(dead_code)]

use std::sync::Arc;

use panda_api::AppState;
use panda_core::SystemClock;
use panda_store::TokenScope;
use panda_store::testing::TestStore;
use tokio_util::sync::{CancellationToken, DropGuard};

/// A server on a loopback port, stopped when this is dropped.
pub struct Served {
    pub url: String,
    /// An admin token's secret.
    pub admin: String,
    /// A read-only token's secret.
    pub viewer: String,
    pub test: TestStore,
    _stop: DropGuard,
}

pub async fn serve() -> Served {
    serve_on(panda_store::testing::sqlite().await).await
}

/// Serves the store of `test` (SQLite or PostgreSQL).
pub async fn serve_on(test: TestStore) -> Served {
    // reqwest is built without a TLS provider of its own; the process picks ring.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let now = chrono::Utc::now();
    let (_, admin) = test
        .store
        .token_create("admin", TokenScope::Admin, now)
        .await
        .expect("admin token");
    let (_, viewer) = test
        .store
        .token_create("viewer", TokenScope::ReadOnly, now)
        .await
        .expect("viewer token");
    let (url, stop) = another_server(&test).await;
    Served {
        url,
        admin,
        viewer,
        test,
        _stop: stop,
    }
}

/// A server of its own over the store of `test`, as a second node over a shared store: its
/// URL, and the guard that stops it.
pub async fn another_server(test: &TestStore) -> (String, DropGuard) {
    let shutdown = CancellationToken::new();
    let state = AppState::new(
        Arc::clone(&test.store),
        Arc::new(SystemClock),
        None,
        shutdown.clone(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("address"));
    tokio::spawn(panda_api::serve(listener, state));
    (url, shutdown.drop_guard())
}
