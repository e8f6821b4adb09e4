//! Chains, in PostgreSQL's dialect: changes of links take one transaction-scoped advisory
//! lock, and a follower's row is locked (shared) while its execution is queued, as an enqueue
//! locks its job.

use crate::ChainSql;

pub(super) const SQL: ChainSql = ChainSql {
    // One key for every change of links: they are rare, and a cycle check must see every
    // other change that could close the same cycle.
    lock: "SELECT pg_advisory_xact_lock(7370019)",
    graph: "SELECT d.name AS job, u.name AS upstream FROM job_chains c \
            JOIN jobs d ON d.id = c.job_id JOIN jobs u ON u.id = c.upstream_id \
            WHERE d.deleted_at IS NULL",
    insert: "INSERT INTO job_chains (upstream_id, job_id, on_end) VALUES ($1, $2, $3)",
    forget: "DELETE FROM job_chains WHERE job_id = $1",
    followers_of: "SELECT d.name AS name FROM job_chains c JOIN jobs d ON d.id = c.job_id \
                   WHERE c.upstream_id = $1 AND d.deleted_at IS NULL ORDER BY d.name",
    followers: "SELECT c.upstream_id AS upstream_id, c.on_end AS on_end, j.id AS id, \
                    j.spec AS spec, j.created_at AS created_at, j.updated_at AS updated_at \
                FROM job_chains c JOIN jobs j ON j.id = c.job_id \
                WHERE c.upstream_id = ANY($1) AND j.deleted_at IS NULL \
                ORDER BY j.id FOR SHARE OF j",
};
