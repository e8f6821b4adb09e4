//! API tokens, in SQLite's dialect.

use crate::TokenSql;

pub(super) const SQL: TokenSql = TokenSql {
    insert: "INSERT INTO api_tokens (id, name, scope, hash, created_at) VALUES (?, ?, ?, ?, ?)",
    by_hash: "SELECT * FROM api_tokens WHERE hash = ? AND revoked_at IS NULL",
    touch: "UPDATE api_tokens SET last_used_at = ? WHERE id = ?",
    list: "SELECT * FROM api_tokens WHERE revoked_at IS NULL ORDER BY name",
    revoke: "UPDATE api_tokens SET revoked_at = ? WHERE name = ? AND revoked_at IS NULL",
};
