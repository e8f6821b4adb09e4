//! Chains, in SQLite's dialect. One writer: no lock to take.

use crate::ChainSql;

pub(super) const SQL: ChainSql = ChainSql {
    // The write transaction is the only writer already.
    lock: "SELECT 1",
    graph: "SELECT d.name AS job, u.name AS upstream FROM job_chains c \
            JOIN jobs d ON d.id = c.job_id JOIN jobs u ON u.id = c.upstream_id \
            WHERE d.deleted_at IS NULL",
    insert: "INSERT INTO job_chains (upstream_id, job_id, on_end) VALUES (?, ?, ?)",
    forget: "DELETE FROM job_chains WHERE job_id = ?",
    followers_of: "SELECT d.name AS name FROM job_chains c JOIN jobs d ON d.id = c.job_id \
                   WHERE c.upstream_id = ? AND d.deleted_at IS NULL ORDER BY d.name",
    followers: "SELECT c.upstream_id AS upstream_id, c.on_end AS on_end, j.id AS id, \
                    j.spec AS spec, j.created_at AS created_at, j.updated_at AS updated_at \
                FROM job_chains c JOIN jobs j ON j.id = c.job_id \
                WHERE c.upstream_id IN (SELECT value FROM json_each(?)) \
                    AND j.deleted_at IS NULL \
                ORDER BY j.id",
};
