//! API tokens: only a hash of each secret is stored.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use panda_core::validate_name;
use uuid::Uuid;

use crate::dialect::{Backend, Conn, query};
use crate::error::is_unique_violation;
use crate::model::{ApiToken, TokenScope};
use crate::records::{self, all};
use crate::{StoreError, StoreResult, token};

/// API tokens.
#[async_trait]
pub trait TokenStore: Send + Sync + std::fmt::Debug {
    /// Creates a token and returns it with its secret, which is not stored and cannot be shown
    /// again. `Conflict` if the name is taken.
    async fn token_create(
        &self,
        name: &str,
        scope: TokenScope,
        now: DateTime<Utc>,
    ) -> StoreResult<(ApiToken, String)>;

    /// The live token whose secret this is, if any; notes when it was used (to the minute).
    async fn token_verify(&self, secret: &str, now: DateTime<Utc>)
    -> StoreResult<Option<ApiToken>>;

    /// Live tokens, by name.
    async fn token_list(&self) -> StoreResult<Vec<ApiToken>>;

    /// Revokes a token by name; it stops working at once.
    async fn token_revoke(&self, name: &str, now: DateTime<Utc>) -> StoreResult<()>;
}

/// The statements of [`TokenStore`], in each backend's dialect.
#[derive(Debug)]
pub struct TokenSql {
    /// `(id, name, scope, hash, created_at)`.
    pub insert: &'static str,
    /// The live token with this `hash`.
    pub by_hash: &'static str,
    /// `(last_used_at, id)`.
    pub touch: &'static str,
    /// Live tokens by name.
    pub list: &'static str,
    /// `(revoked_at, name)`.
    pub revoke: &'static str,
}

/// How stale a token's "last used" may get before a verify writes it again.
const LAST_USED_GRAIN: chrono::TimeDelta = chrono::TimeDelta::minutes(1);

#[async_trait]
impl<B: Backend> TokenStore for B {
    async fn token_create(
        &self,
        name: &str,
        scope: TokenScope,
        now: DateTime<Utc>,
    ) -> StoreResult<(ApiToken, String)> {
        validate_name("token", name)?;
        let secret = token::generate_secret();
        let token = ApiToken {
            id: Uuid::now_v7(),
            name: name.to_owned(),
            scope,
            created_at: now,
            last_used_at: None,
        };
        let inserted = self
            .writer()
            .execute(
                query(B::SQL.tokens.insert)
                    .uuid(token.id)
                    .text(name)
                    .text(scope.as_str())
                    .text(token::hash_secret(&secret))
                    .time(now),
            )
            .await;
        match inserted {
            Err(err) if is_unique_violation(&err) => Err(StoreError::Conflict(format!(
                "a token named {name:?} already exists; revoke it first or pick another name"
            ))),
            Err(err) => Err(err),
            Ok(_) => Ok((token, secret)),
        }
    }

    async fn token_verify(
        &self,
        secret: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<ApiToken>> {
        let row = self
            .reader()
            .fetch_optional(query(B::SQL.tokens.by_hash).text(token::hash_secret(secret)))
            .await?;
        let Some(row) = row else { return Ok(None) };
        if !token::hash_matches(&crate::dialect::Record::text(&row, "hash")?, secret) {
            return Ok(None);
        }
        let mut token = records::token(&row)?;
        if token.last_used_at.is_none_or(|t| t < now - LAST_USED_GRAIN) {
            // "Last used" is a convenience: a full disk must not turn away reads.
            match self
                .writer()
                .execute(query(B::SQL.tokens.touch).time(now).uuid(token.id))
                .await
            {
                Ok(_) => token.last_used_at = Some(now),
                Err(StoreError::Full(_)) => {}
                Err(err) => return Err(err),
            }
        }
        Ok(Some(token))
    }

    async fn token_list(&self) -> StoreResult<Vec<ApiToken>> {
        let rows = self.reader().fetch_all(query(B::SQL.tokens.list)).await?;
        all(&rows, records::token)
    }

    async fn token_revoke(&self, name: &str, now: DateTime<Utc>) -> StoreResult<()> {
        let revoked = self
            .writer()
            .execute(query(B::SQL.tokens.revoke).time(now).text(name))
            .await?;
        if revoked == 0 {
            return Err(StoreError::not_found(format!("token {name:?}")));
        }
        Ok(())
    }
}
