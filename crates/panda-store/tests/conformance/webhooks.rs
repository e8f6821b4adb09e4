//! Inbound webhooks: a job's secret URL, kept only as a hash, and what it opens.

use std::sync::Arc;

use panda_store::{SigningKey, Store, StoreError};

use super::support::*;

pub async fn a_webhook_token_opens_its_live_job_until_rotated_removed_or_deleted(
    store: Arc<dyn Store>,
) {
    create_job(&store, "deploy-site").await;
    assert_eq!(store.webhook_get("deploy-site").await.expect("get"), None);
    let (first, webhook) = store
        .webhook_rotate("deploy-site", SigningKey::Keep, at(1))
        .await
        .expect("make");
    assert!(!webhook.signed);
    let found = store
        .webhook_find(&first)
        .await
        .expect("find")
        .expect("opens");
    assert_eq!((found.job.as_str(), found.secret), ("deploy-site", None));
    assert_eq!(store.webhook_find("whk_guess").await.expect("find"), None);

    let (second, webhook) = store
        .webhook_rotate("deploy-site", SigningKey::Set("k3y".into()), at(2))
        .await
        .expect("rotate");
    assert!(webhook.signed);
    assert_ne!(first, second);
    assert_eq!(
        store.webhook_find(&first).await.expect("find"),
        None,
        "rotated"
    );
    let (third, webhook) = store
        .webhook_rotate("deploy-site", SigningKey::Keep, at(3))
        .await
        .expect("rotate, keeping the key");
    assert!(webhook.signed);
    assert_eq!(
        store
            .webhook_find(&third)
            .await
            .expect("find")
            .and_then(|t| t.secret),
        Some("k3y".to_owned())
    );
    let shown = store
        .webhook_get("deploy-site")
        .await
        .expect("get")
        .expect("one");
    assert_eq!((shown.signed, shown.created_at), (true, at(3)));

    store.webhook_delete("deploy-site").await.expect("remove");
    assert_eq!(store.webhook_find(&third).await.expect("find"), None);
    assert!(matches!(
        store.webhook_delete("deploy-site").await,
        Err(StoreError::NotFound { .. })
    ));

    let (fourth, _) = store
        .webhook_rotate("deploy-site", SigningKey::None, at(4))
        .await
        .expect("make again");
    store
        .job_delete("deploy-site", at(5))
        .await
        .expect("delete the job");
    assert_eq!(
        store.webhook_find(&fourth).await.expect("find"),
        None,
        "a deleted job's URL opens nothing"
    );
    assert!(matches!(
        store
            .webhook_rotate("deploy-site", SigningKey::Keep, at(6))
            .await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        store
            .webhook_rotate("nope", SigningKey::Set(String::new()), at(6))
            .await,
        Err(StoreError::Invalid(_))
    ));
}
