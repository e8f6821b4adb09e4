//! Wake-ups on PostgreSQL: `pg_notify` inside the transaction that queued the work, and one
//! `LISTEN` connection per store that forwards what it hears to the store's subscribers. It
//! drops notices while it reconnects, which is fine: workers poll as well.

use std::time::Duration;

use sqlx::postgres::{PgListener, PgPool};
use sqlx::{Postgres, Transaction};
use tokio::sync::broadcast;

use crate::StoreResult;
use crate::error::OrStore;
use crate::model::Notice;

/// The channel wake-ups are sent on; the payload is the queue's name.
pub(super) const CHANNEL: &str = "panda_queued";
/// The first wait before the listener reconnects; it doubles up to [`RECONNECT_MAX`].
const RECONNECT_MIN: Duration = Duration::from_millis(100);
const RECONNECT_MAX: Duration = Duration::from_secs(5);

pub(super) async fn listen(pool: &PgPool) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(CHANNEL).await?;
    Ok(listener)
}

/// Forwards every notification on [`CHANNEL`] to the store's subscribers until the task is
/// aborted, reconnecting (with a growing pause) whenever the connection fails.
pub(super) async fn forward_notices(
    pool: PgPool,
    mut listener: Option<PgListener>,
    notices: broadcast::Sender<Notice>,
) {
    let mut pause = RECONNECT_MIN;
    loop {
        let mut active = match listener.take() {
            Some(active) => active,
            None => match listen(&pool).await {
                Ok(active) => active,
                Err(err) => {
                    tracing::warn!(error = %err, "LISTEN {CHANNEL} failed; retrying");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(RECONNECT_MAX);
                    continue;
                }
            },
        };
        loop {
            match active.recv().await {
                Ok(notification) => {
                    pause = RECONNECT_MIN;
                    // No receiver is fine: polling is the truth.
                    let _ = notices.send(Notice::Queued {
                        queue: notification.payload().to_owned(),
                    });
                }
                Err(err) => {
                    tracing::warn!(error = %err, "LISTEN {CHANNEL} connection failed; reconnecting");
                    break;
                }
            }
        }
        drop(active);
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(RECONNECT_MAX);
    }
}

/// Wakes the workers of each queue, when the transaction commits (NOTIFY is transactional).
pub(super) async fn queued(
    tx: &mut Transaction<'static, Postgres>,
    mut queues: Vec<String>,
) -> StoreResult<()> {
    if queues.is_empty() {
        return Ok(());
    }
    queues.sort();
    sqlx::query("SELECT pg_notify($1, t.queue) FROM UNNEST($2::text[]) AS t(queue)")
        .bind(CHANNEL)
        .bind(&queues)
        .execute(&mut **tx)
        .await
        .or_store()?;
    Ok(())
}
