//! Rate limits (a job's `rate_limit`), enforced in the claim's transaction on every node: a
//! sliding log of starts per `(job, key)` in `rate_starts`, each kept until it leaves its
//! window (see `panda_core::RateLimit` for why a log and not a window or a bucket).
//!
//! The claim reads the limits of its candidates' jobs from `rate_limits` (kept beside the
//! definition, in the transaction that stores it), takes each key's lock (on PostgreSQL an
//! advisory lock per key, in one order on every node; SQLite has one writer), counts the key's
//! starts still in their window, and starts no more than the limit leaves. Every execution
//! over it waits: its `run_at` moves to the instant a start leaves the window, which is when
//! it could start if every start before it did (so the claim rereads it then, not before), and
//! its reason says so. The starts the claim makes are added to the log before it commits.
//!
//! The limit is the job's current one: a limit protects something outside Panda whose capacity
//! is what it is now, so queued executions follow a change (retry and overlap rules, by
//! contrast, are kept from each execution's creation).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use panda_core::{Execution, Job, KeyExpr, RateLimit};
use uuid::Uuid;

use crate::dialect::{Backend, Column, Conn, Record, query};
use crate::{StoreError, StoreResult};

/// The statements of rate limits, in each backend's dialect.
#[derive(Debug)]
pub struct RateSql {
    /// Stores a job's limit: `(job_id, starts, window_ms, key_expr, key_default)`.
    pub upsert: &'static str,
    /// Drops a job's limit: `(job_id)`.
    pub forget: &'static str,
    /// The limits of these jobs: `job_id`, `starts`, `window_ms`, `key_expr`, `key_default`;
    /// `(job ids)`.
    pub of_jobs: &'static str,
    /// Locks keys against other claimers until the transaction ends, in one order on every
    /// node: `(table of (job_id, key))`. `None` where one writer at a time serialises claims.
    pub lock: Option<&'static str>,
    /// The starts still in their window, per key: `job_id`, `key`, `live`; `(now, table of
    /// (job_id, key))`.
    pub live: &'static str,
    /// The `n` oldest starts still in their window, per key: `job_id`, `key`, `expires_at`;
    /// `(now, table of (job_id, key, n))`.
    pub oldest: &'static str,
    /// Adds starts to the log: `(table of (job_id, key, expires_at, execution_id))`.
    pub record: &'static str,
    /// Moves queued executions over a limit to when they may start, with the reason: `(table
    /// of (id, run_at, reason))`.
    pub delay: &'static str,
    /// Clears the rate limit's reason of executions now started: `(ids)`.
    pub clear: &'static str,
    /// Makes a job's executions that wait for its rate limit due now (its limit changed):
    /// `(job_id, now)`.
    pub release: &'static str,
    /// Deletes the starts that left their window: `(now)`.
    pub prune: &'static str,
}

/// What the reason of an execution waiting for its rate limit starts with.
pub(crate) const WAITING_PREFIX: &str = "rate limited until ";

/// Stores `job`'s rate limit (or drops the one it had), in the transaction that stores its
/// definition.
pub(crate) async fn store<B: Backend>(tx: &mut B::Tx, job: &Job) -> StoreResult<()> {
    let Some(limit) = &job.spec.rate_limit else {
        return forget::<B>(tx, job).await;
    };
    let key_default = match limit.key_expr() {
        Some(KeyExpr::Env(name)) => job.spec.env.get(&name).cloned(),
        _ => None,
    };
    tx.execute(
        query(B::SQL.rate.upsert)
            .uuid(job.id)
            .opt_i32(Some(i32::try_from(limit.starts).unwrap_or(i32::MAX)))
            .i64(i64::try_from(limit.per.as_millis()).unwrap_or(i64::MAX))
            .opt_text(limit.key.clone())
            .opt_text(key_default),
    )
    .await?;
    Ok(())
}

/// Drops `job`'s rate limit (its job is deleted, or no longer limited).
pub(crate) async fn forget<B: Backend>(tx: &mut B::Tx, job: &Job) -> StoreResult<()> {
    tx.execute(query(B::SQL.rate.forget).uuid(job.id)).await?;
    Ok(())
}

/// Makes `job`'s executions that wait for its rate limit due at `now`, to be counted again
/// under the limit it has now (a raised or removed limit frees them at once).
pub(crate) async fn release<B: Backend>(
    tx: &mut B::Tx,
    job: &Job,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    tx.execute(query(B::SQL.rate.release).uuid(job.id).time(now))
        .await?;
    Ok(())
}

/// A job's limit as the claim reads it.
#[derive(Debug, Clone)]
pub(crate) struct Rule {
    limit: RateLimit,
    key: Option<KeyExpr>,
    /// The job's own value of an `env.NAME` key.
    key_default: Option<String>,
}

impl Rule {
    /// The key `e` counts against: the empty key for a limit of the job as a whole.
    fn key_of(&self, e: &Execution) -> String {
        match &self.key {
            None => String::new(),
            Some(expr) => expr.key_of(
                e.payload.as_ref(),
                |name| {
                    e.env
                        .get(name)
                        .cloned()
                        .or_else(|| self.key_default.clone())
                },
                e.idempotency_key.as_deref(),
            ),
        }
    }

    fn window(&self) -> TimeDelta {
        TimeDelta::from_std(self.limit.per).unwrap_or(TimeDelta::MAX)
    }
}

/// A key of a rate limit: its job and its key (empty when the limit is the job's as a whole).
pub(crate) type RateKey = (Uuid, String);

/// What the claim's rate limits decided about its candidates.
#[derive(Debug, Default)]
pub(crate) struct Admission {
    /// The candidates that may start, by id: their key and when their start leaves the window.
    pub(crate) admitted: HashMap<Uuid, (RateKey, DateTime<Utc>)>,
    /// How many candidates were moved to later.
    pub(crate) delayed: u64,
}

impl Admission {
    /// Whether `e` may start (a candidate of a job without a rate limit always may).
    pub(crate) fn allows(&self, e: &Execution, rated: &HashMap<Uuid, Rule>) -> bool {
        !rated.contains_key(&e.job_id.as_uuid()) || self.admitted.contains_key(&e.id.as_uuid())
    }
}

/// The rate limits of the candidates' jobs, by job id (empty for most claims: one read of a
/// small table).
pub(crate) async fn rules<B: Backend>(
    tx: &mut B::Tx,
    candidates: &[Execution],
) -> StoreResult<HashMap<Uuid, Rule>> {
    let jobs: Vec<Uuid> = candidates
        .iter()
        .map(|e| e.job_id.as_uuid())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    if jobs.is_empty() {
        return Ok(HashMap::new());
    }
    let mut rules = HashMap::new();
    for row in tx.fetch_all(query(B::SQL.rate.of_jobs).uuids(jobs)).await? {
        let starts = u32::try_from(row.i32("starts")?)
            .map_err(|_| StoreError::Corrupt("rate limit starts out of range".into()))?;
        let window_ms = u64::try_from(row.i64("window_ms")?)
            .map_err(|_| StoreError::Corrupt("rate limit window out of range".into()))?;
        let limit = RateLimit {
            starts,
            per: Duration::from_millis(window_ms),
            key: row.opt_text("key_expr")?,
        };
        rules.insert(
            row.uuid("job_id")?,
            Rule {
                key: limit.key_expr(),
                limit,
                key_default: row.opt_text("key_default")?,
            },
        );
    }
    Ok(rules)
}

/// Decides which rate-limited candidates may start, under their keys' locks, and moves the
/// others to when they may: see the module's documentation. Runs before any other lock of the
/// claim is taken (the candidates' rows aside, which no claimer waits for), so that claimers
/// that wait for each other's keys cannot also wait the other way round.
pub(crate) async fn admit<B: Backend>(
    tx: &mut B::Tx,
    candidates: &[Execution],
    rules: &HashMap<Uuid, Rule>,
    now: DateTime<Utc>,
) -> StoreResult<Admission> {
    // Each rate-limited candidate with its key, in claim order.
    let rated: Vec<(&Execution, &Rule, RateKey)> = candidates
        .iter()
        .filter_map(|e| {
            let rule = rules.get(&e.job_id.as_uuid())?;
            Some((e, rule, (e.job_id.as_uuid(), rule.key_of(e))))
        })
        .collect();
    if rated.is_empty() {
        return Ok(Admission::default());
    }
    let keys: Vec<RateKey> = rated
        .iter()
        .map(|(.., key)| key.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let key_table = || {
        vec![
            Column::Uuids(Column::of(&keys, |(job, _)| Some(*job))),
            Column::Texts(Column::of(&keys, |(_, key)| Some(key.clone()))),
        ]
    };
    if let Some(lock) = B::SQL.rate.lock {
        tx.fetch_all(query(lock).table(key_table())).await?;
    }
    let mut live: HashMap<RateKey, u32> = HashMap::new();
    for row in tx
        .fetch_all(query(B::SQL.rate.live).time(now).table(key_table()))
        .await?
    {
        let count = u32::try_from(row.i64("live")?).unwrap_or(u32::MAX);
        live.insert((row.uuid("job_id")?, row.text("key")?), count);
    }

    let mut waiting: BTreeMap<RateKey, Vec<(&Execution, &Rule)>> = BTreeMap::new();
    for (e, rule, key) in &rated {
        waiting.entry(key.clone()).or_default().push((e, rule));
    }
    let mut admission = Admission::default();
    // Per key over its limit: how many of its oldest starts the delays are read from.
    let mut needed: Vec<(RateKey, i64)> = Vec::new();
    for (key, es) in &waiting {
        let rule = es[0].1;
        let expires_at = now + rule.window();
        let room = rule
            .limit
            .starts
            .saturating_sub(live.get(key).copied().unwrap_or(0));
        for (e, _) in es.iter().take(room as usize) {
            admission
                .admitted
                .insert(e.id.as_uuid(), (key.clone(), expires_at));
        }
        let over = es.len().saturating_sub(room as usize);
        if over > 0 {
            let l = live.get(key).copied().unwrap_or(0) as usize;
            let first = (l + room as usize).saturating_sub(rule.limit.starts as usize);
            needed.push((key.clone(), i64::try_from(l.min(first + over)).unwrap_or(0)));
        }
    }
    if needed.is_empty() {
        return Ok(admission);
    }

    let mut oldest: HashMap<RateKey, Vec<DateTime<Utc>>> = HashMap::new();
    for row in tx
        .fetch_all(query(B::SQL.rate.oldest).time(now).table(vec![
            Column::Uuids(Column::of(&needed, |((job, _), _)| Some(*job))),
            Column::Texts(Column::of(&needed, |((_, key), _)| Some(key.clone()))),
            Column::I64s(Column::of(&needed, |(_, n)| Some(*n))),
        ]))
        .await?
    {
        oldest
            .entry((row.uuid("job_id")?, row.text("key")?))
            .or_default()
            .push(row.time("expires_at")?);
    }
    let mut delays: Vec<(Uuid, DateTime<Utc>, String)> = Vec::new();
    for (key, _) in &needed {
        let es = &waiting[key];
        let rule = es[0].1;
        let mut expiries = oldest.remove(key).unwrap_or_default();
        expiries.sort();
        let live = live.get(key).copied().unwrap_or(0);
        let room = rule.limit.starts.saturating_sub(live);
        let over: Vec<&Execution> = es.iter().skip(room as usize).map(|(e, _)| *e).collect();
        let times = free_times(
            &expiries,
            live,
            room,
            rule.limit.starts,
            now + rule.window(),
            rule.window(),
            over.len(),
        );
        for (e, until) in over.into_iter().zip(times) {
            delays.push((
                e.id.as_uuid(),
                until,
                rule.limit.waiting_reason(&key.1, until),
            ));
        }
    }
    admission.delayed = u64::try_from(delays.len()).unwrap_or(u64::MAX);
    tx.execute(query(B::SQL.rate.delay).table(vec![
        Column::Uuids(Column::of(&delays, |(id, ..)| Some(*id))),
        Column::Times(Column::of(&delays, |(_, at, _)| Some(*at))),
        Column::Texts(Column::of(&delays, |(.., reason)| Some(reason.clone()))),
    ]))
    .await?;
    Ok(admission)
}

/// When each of `over` executions of one key may start, in order, if every start before it
/// happens as soon as it may: the key's window holds `live` starts, of which `oldest` are the
/// first to leave it (sorted; as many as these times need), and `admitted` more starting now
/// that leave it at `admitted_until`; at most `starts` may be in it at once.
///
/// The instants a start leaves the window, in order, are the live ones, then the admitted ones,
/// then each of the waiting ones' own a window after it starts. The first waiting execution
/// starts when the window holds one fewer than the limit: as the `(live + admitted − starts)`th
/// of those instants passes; each next one, as the next passes.
pub(crate) fn free_times(
    oldest: &[DateTime<Utc>],
    live: u32,
    admitted: u32,
    starts: u32,
    admitted_until: DateTime<Utc>,
    window: TimeDelta,
    over: usize,
) -> Vec<DateTime<Utc>> {
    let live = live as usize;
    let held = live + admitted as usize;
    let first = held.saturating_sub(starts as usize);
    let starts = (starts as usize).max(1);
    let mut times: Vec<DateTime<Utc>> = Vec::with_capacity(over);
    for j in 0..over {
        let index = first + j;
        let at = if index < live {
            // A live start as old as this is read unless the log lost it meanwhile (pruned
            // early): then the window's end, which is never too early by the log.
            oldest.get(index).copied().unwrap_or(admitted_until)
        } else if index < held {
            admitted_until
        } else {
            times[j - starts] + window
        };
        times.push(at);
    }
    times
}

/// Adds the starts of the claimed rate-limited executions to the log, and clears the reason of
/// those that had waited for their limit.
pub(crate) async fn record<B: Backend>(
    tx: &mut B::Tx,
    claimed: &mut [Execution],
    admission: &Admission,
) -> StoreResult<()> {
    let started: Vec<(&Execution, &(RateKey, DateTime<Utc>))> = claimed
        .iter()
        .filter_map(|e| Some((e, admission.admitted.get(&e.id.as_uuid())?)))
        .collect();
    if started.is_empty() {
        return Ok(());
    }
    tx.execute(query(B::SQL.rate.record).table(vec![
        Column::Uuids(Column::of(&started, |(_, ((job, _), _))| Some(*job))),
        Column::Texts(Column::of(&started, |(_, ((_, key), _))| Some(key.clone()))),
        Column::Times(Column::of(&started, |(_, (_, at))| Some(*at))),
        Column::Uuids(Column::of(&started, |(e, _)| Some(e.id.as_uuid()))),
    ]))
    .await?;
    let waited: Vec<Uuid> = started
        .iter()
        .filter(|(e, _)| {
            e.reason
                .as_deref()
                .is_some_and(|r| r.starts_with(WAITING_PREFIX))
        })
        .map(|(e, _)| e.id.as_uuid())
        .collect();
    if !waited.is_empty() {
        tx.execute(query(B::SQL.rate.clear).uuids(waited)).await?;
        for e in claimed.iter_mut() {
            if e.reason
                .as_deref()
                .is_some_and(|r| r.starts_with(WAITING_PREFIX))
            {
                e.reason = None;
            }
        }
    }
    Ok(())
}

/// How long a start stays in the log after it left its window. A claim counts the starts that
/// have not left it by the claim's own `now`, which it read before it waited for its key's
/// lock; a start deleted by a later `now` in between would not be counted, and the claim
/// could start one more than its limit in a window that ends at that start.
const PRUNE_AFTER: TimeDelta = TimeDelta::minutes(1);

/// Deletes the starts that left their window a while ago (the rescuer's pass).
pub(crate) async fn prune<B: Backend>(tx: &mut B::Tx, now: DateTime<Utc>) -> StoreResult<()> {
    tx.execute(query(B::SQL.rate.prune).time(now - PRUNE_AFTER))
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(secs, 0).expect("instant")
    }

    #[test]
    fn with_room_left_the_first_waiting_starts_as_the_admitted_leave() {
        // 3 per 60 s; nothing live, 3 admitted now (t = 0): the next 3 wait until t = 60, the
        // 3 after them until t = 120.
        let times = free_times(&[], 0, 3, 3, at(60), TimeDelta::seconds(60), 7);
        assert_eq!(
            times,
            vec![at(60), at(60), at(60), at(120), at(120), at(120), at(180)]
        );
    }

    #[test]
    fn a_full_window_frees_one_start_as_each_live_one_leaves() {
        // 3 per 60 s, started at t = -50, -20 and -10 (leaving at 10, 40, 50): the waiting
        // start at 10, 40 and 50, then a window after each of them.
        let oldest = [at(10), at(40), at(50)];
        let times = free_times(&oldest, 3, 0, 3, at(60), TimeDelta::seconds(60), 5);
        assert_eq!(times, vec![at(10), at(40), at(50), at(70), at(100)]);
    }

    #[test]
    fn a_lowered_limit_waits_for_the_surplus_to_leave_first() {
        // 4 live, the limit now 2: the first waiting one starts when 3 of them have left.
        let oldest = [at(10), at(20), at(30), at(40)];
        let times = free_times(&oldest, 4, 0, 2, at(60), TimeDelta::seconds(60), 3);
        assert_eq!(times, vec![at(30), at(40), at(90)]);
    }

    #[test]
    fn some_live_and_some_admitted_fill_the_window_in_the_order_they_leave() {
        // 3 per 60 s, 1 live leaving at 10, 2 admitted now leaving at 60.
        let times = free_times(&[at(10)], 1, 2, 3, at(60), TimeDelta::seconds(60), 4);
        assert_eq!(times, vec![at(10), at(60), at(60), at(70)]);
    }
}
