//! API tokens, in PostgreSQL's dialect.

use crate::TokenSql;

pub(super) const SQL: TokenSql = TokenSql {
    insert: "INSERT INTO api_tokens (id, name, scope, hash, created_at) \
             VALUES ($1, $2, $3, $4, $5)",
    by_hash: "SELECT * FROM api_tokens WHERE hash = $1 AND revoked_at IS NULL",
    touch: "UPDATE api_tokens SET last_used_at = $1 WHERE id = $2",
    list: "SELECT * FROM api_tokens WHERE revoked_at IS NULL ORDER BY name",
    revoke: "UPDATE api_tokens SET revoked_at = $1 WHERE name = $2 AND revoked_at IS NULL",
};
