//! API tokens: secrets shown once, stored hashed, revocable by name.

use std::sync::Arc;

use panda_store::{ApiToken, Store, StoreError, TokenScope};

use super::support::*;

fn names(tokens: &[ApiToken]) -> Vec<&str> {
    tokens.iter().map(|t| t.name.as_str()).collect()
}

pub async fn token_create_returns_a_secret_that_verifies(store: Arc<dyn Store>) {
    let (admin, admin_secret) = store
        .token_create("admin", TokenScope::Admin, base())
        .await
        .expect("create admin");
    let (ci, ci_secret) = store
        .token_create("ci-deploy", TokenScope::ReadOnly, at(1))
        .await
        .expect("create ci");
    assert_eq!(
        (admin.name.as_str(), admin.scope),
        ("admin", TokenScope::Admin)
    );
    assert_eq!(
        (ci.name.as_str(), ci.scope),
        ("ci-deploy", TokenScope::ReadOnly)
    );
    assert_eq!((ci.created_at, ci.last_used_at), (at(1), None));
    assert_ne!(admin.id, ci.id);
    assert_ne!(admin_secret, ci_secret);

    for (token, secret) in [(&admin, &admin_secret), (&ci, &ci_secret)] {
        let verified = store
            .token_verify(secret, at(30))
            .await
            .expect("verify")
            .expect("the secret is accepted");
        assert_eq!(
            (
                verified.id,
                &verified.name,
                verified.scope,
                verified.created_at
            ),
            (token.id, &token.name, token.scope, token.created_at)
        );
    }
}

pub async fn token_verify_of_an_unknown_secret_is_none(store: Arc<dyn Store>) {
    let (_, secret) = store
        .token_create("admin", TokenScope::Admin, base())
        .await
        .expect("create");
    let mut altered = secret.clone();
    altered.push('0');
    for guess in [
        "",
        "panda_",
        "not-a-token",
        altered.as_str(),
        &secret[..secret.len() - 1],
    ] {
        assert_eq!(
            store.token_verify(guess, at(1)).await.expect("verify"),
            None,
            "{guess:?} is not a secret"
        );
    }
}

pub async fn token_verify_notes_when_the_token_was_used(store: Arc<dyn Store>) {
    let (_, secret) = store
        .token_create("admin", TokenScope::Admin, base())
        .await
        .expect("create");
    let now = at(90);
    store
        .token_verify(&secret, now)
        .await
        .expect("verify")
        .expect("accepted");

    let listed = store.token_list().await.expect("list");
    let used = listed[0].last_used_at.expect("the use is noted");
    // "To the minute": the store may round down, but not by more than a minute.
    assert_within(used, now - chrono::Duration::seconds(60), now);
}

pub async fn token_list_lists_live_tokens_by_name_without_secrets(store: Arc<dyn Store>) {
    let mut created = Vec::new();
    for (name, scope) in [
        ("deploy", TokenScope::Admin),
        ("admin", TokenScope::Admin),
        ("grafana", TokenScope::ReadOnly),
    ] {
        created.push(
            store
                .token_create(name, scope, base())
                .await
                .expect("create")
                .0,
        );
    }
    store.token_revoke("deploy", at(1)).await.expect("revoke");

    let listed = store.token_list().await.expect("list");
    assert_eq!(names(&listed), ["admin", "grafana"]);
    assert_eq!(listed[0], created[1]);
    assert_eq!(listed[1], created[2]);
}

pub async fn token_revoke_stops_the_secret_at_once_and_frees_the_name(store: Arc<dyn Store>) {
    let (_, old_secret) = store
        .token_create("ci", TokenScope::Admin, base())
        .await
        .expect("create");
    store.token_revoke("ci", at(1)).await.expect("revoke");
    assert_eq!(
        store
            .token_verify(&old_secret, at(1))
            .await
            .expect("verify"),
        None
    );
    assert!(store.token_list().await.expect("list").is_empty());

    let (new, new_secret) = store
        .token_create("ci", TokenScope::ReadOnly, at(2))
        .await
        .expect("the name is free again");
    let verified = store
        .token_verify(&new_secret, at(3))
        .await
        .expect("verify")
        .expect("the new secret is accepted");
    assert_eq!(verified.id, new.id);
    assert_eq!(
        store
            .token_verify(&old_secret, at(3))
            .await
            .expect("verify"),
        None
    );
}

pub async fn token_create_with_a_taken_name_is_a_conflict(store: Arc<dyn Store>) {
    let (first, secret) = store
        .token_create("admin", TokenScope::Admin, base())
        .await
        .expect("create");
    assert_err!(
        store
            .token_create("admin", TokenScope::ReadOnly, at(1))
            .await,
        StoreError::Conflict(_)
    );
    assert_eq!(
        store.token_list().await.expect("list"),
        std::slice::from_ref(&first)
    );
    let verified = store.token_verify(&secret, at(2)).await.expect("verify");
    assert_eq!(verified.map(|t| t.id), Some(first.id));
}

pub async fn token_revoke_of_an_unknown_name_is_not_found(store: Arc<dyn Store>) {
    assert_err!(
        store.token_revoke("nobody", base()).await,
        StoreError::NotFound { .. }
    );
    store
        .token_create("once", TokenScope::Admin, base())
        .await
        .expect("create");
    store.token_revoke("once", at(1)).await.expect("revoke");
    assert_err!(
        store.token_revoke("once", at(2)).await,
        StoreError::NotFound { .. }
    );
}
