//! The store conformance suite: every case in `conformance/` runs against every backend.
//!
//! A case is a plain `pub async fn case(store: Arc<dyn Store>)` that states one behaviour the
//! [`Store`](panda_store::Store) trait promises. [`conformance!`] stamps one `#[tokio::test]` per
//! case per backend, so a failure is named after both, e.g.
//! `sqlite::claim_skips_executions_scheduled_in_the_future`.
//!
//! Cases never sleep: every call takes `now` explicitly, built from a fixed instant
//! (`cases::support::base()`) and moved by hand. A timeout around an await is a hang guard, never a
//! timing assertion.
//!
//! PostgreSQL cases run when `PANDA_TEST_DATABASE_URL` is set; otherwise each prints why it
//! skipped (and fails instead with `PANDA_REQUIRE_ALL_BACKENDS=1`).

/// The cases, one file per area, in `tests/conformance/`.
#[path = "conformance"]
mod cases {
    #[macro_use]
    pub mod support;

    pub mod alerts;
    pub mod cancel;
    pub mod chains;
    pub mod claim;
    pub mod dlq;
    pub mod enqueue;
    pub mod finish;
    pub mod jobs;
    pub mod keys;
    pub mod lease;
    pub mod limit;
    pub mod listing;
    pub mod logs;
    pub mod monitors;
    pub mod notices;
    pub mod overlap;
    pub mod pause;
    pub mod rate;
    pub mod release;
    pub mod retention;
    pub mod services;
    pub mod slots;
    pub mod tokens;
    pub mod trigger;
    pub mod validation;
    pub mod webhooks;
}

/// Stamps one test per `group::case` for each backend, each with a fresh, isolated store that
/// is thrown away when the case returns (a failed case's PostgreSQL schema stays for a look).
macro_rules! conformance {
    ($($group:ident :: $case:ident),* $(,)?) => {
        /// The cases against a temp-file SQLite store.
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    let test = panda_store::testing::sqlite().await;
                    crate::cases::$group::$case(std::sync::Arc::clone(&test.store)).await;
                    test.close().await;
                }
            )*
        }

        /// The cases against a fresh schema in `PANDA_TEST_DATABASE_URL`.
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    let Some(test) = panda_store::testing::postgres().await else {
                        return;
                    };
                    crate::cases::$group::$case(std::sync::Arc::clone(&test.store)).await;
                    test.close().await;
                }
            )*
        }
    };
}

conformance! {
    // chains
    chains::a_run_that_succeeds_queues_its_followers_once_in_the_write_that_ends_it,
    chains::a_batch_of_successes_queues_each_runs_followers_once,
    chains::an_attempt_that_is_retried_starts_nothing_and_the_final_end_starts_once,
    chains::a_cancelled_run_starts_nothing_and_a_lost_last_attempt_starts_failed_followers,
    chains::a_chain_of_three_runs_the_third_once_when_the_middle_one_is_retried,
    chains::a_link_names_a_live_job_that_is_not_a_service_and_nothing_is_created_otherwise,
    chains::a_cycle_is_refused_on_update_with_the_cycle_named,
    chains::a_followed_job_cannot_be_deleted_until_nothing_follows_it,
    chains::two_updates_that_together_close_a_cycle_cannot_both_pass,
    // jobs
    jobs::job_create_then_get_returns_the_stored_definition,
    jobs::job_name_of_63_characters_is_stored_in_full,
    jobs::job_create_with_a_taken_live_name_is_a_conflict,
    jobs::job_get_of_an_unknown_job_is_not_found,
    jobs::job_list_filters_by_kind_and_sorts_by_name,
    jobs::job_update_replaces_the_definition_and_keeps_id_and_created_at,
    jobs::job_update_of_an_unknown_or_deleted_job_is_not_found,
    jobs::job_update_leaves_existing_executions_on_their_retry_policy,
    jobs::job_update_leaves_existing_executions_on_their_overlap_rule,
    jobs::job_delete_frees_the_name_for_a_new_job,
    jobs::job_delete_keeps_history_readable,
    jobs::job_delete_cancels_queued_executions_and_asks_running_ones_to_stop,
    jobs::job_delete_of_an_unknown_job_is_not_found,
    // bad input
    validation::invalid_job_names_cannot_reach_the_store,
    validation::job_create_with_an_invalid_spec_is_invalid_and_stores_nothing,
    validation::job_update_with_an_invalid_spec_is_invalid_and_changes_nothing,
    validation::enqueue_with_a_payload_over_the_limit_is_payload_too_large,
    validation::enqueue_with_an_over_long_idempotency_key_is_invalid,
    validation::enqueue_of_a_malformed_request_is_invalid_and_queues_nothing,
    validation::enqueue_for_an_unknown_or_deleted_job_is_not_found,
    validation::execution_get_of_an_unknown_execution_is_not_found,
    validation::heartbeat_of_an_unknown_execution_is_not_found,
    validation::finish_of_an_unknown_execution_fails_that_item_only,
    validation::cancel_of_an_unknown_execution_is_not_found,
    validation::log_append_to_an_unknown_execution_is_not_found,
    validation::slot_record_for_an_unknown_job_is_not_found,
    validation::nul_characters_are_invalid_on_every_backend_and_store_nothing,
    // enqueue
    enqueue::enqueue_returns_a_queued_first_attempt_with_the_jobs_queue_and_priority,
    enqueue::enqueue_applies_priority_run_at_and_scheduled_at_overrides,
    enqueue::enqueue_with_a_seen_idempotency_key_returns_the_first_execution,
    enqueue::idempotency_key_still_matches_after_the_first_execution_finished,
    enqueue::idempotency_keys_are_per_job,
    enqueue::concurrent_enqueues_with_one_idempotency_key_create_one_execution,
    enqueue::enqueue_many_answers_each_item_in_its_place_in_one_transaction,
    enqueue::enqueue_many_of_nothing_but_refusals_queues_nothing,
    enqueue::concurrent_batches_with_the_same_keys_in_any_order_each_get_one_execution_per_key,
    // inbound webhooks
    webhooks::a_webhook_token_opens_its_live_job_until_rotated_removed_or_deleted,
    // monitors
    monitors::a_monitors_url_is_made_with_it_opens_only_it_and_stops_when_rotated_or_deleted,
    monitors::a_start_ping_opens_a_run_that_the_end_ping_finishes_with_its_duration,
    monitors::a_failed_ping_goes_to_the_alert_inbox_and_repeats_within_a_second_are_one_run,
    monitors::a_run_whose_end_never_came_times_out_after_the_monitors_timeout,
    monitors::start_pings_that_race_open_one_run,
    // claim
    claim::claim_returns_running_executions_with_a_lease,
    pause::a_paused_queue_accepts_work_and_starts_none_until_resumed,
    keys::a_key_limit_runs_at_most_n_per_key_while_other_keys_run,
    keys::a_full_keys_backlog_holds_back_no_other_work_and_gets_its_turn,
    keys::concurrent_claims_never_run_more_than_a_keys_limit,
    // rate limits
    rate::a_rate_limit_starts_at_most_n_per_window_and_the_rest_wait_with_the_reason,
    rate::a_rate_limit_per_key_counts_each_key_apart,
    rate::a_rate_limited_backlog_holds_back_no_other_work,
    rate::a_changed_rate_limit_applies_to_the_work_already_waiting,
    rate::a_zero_or_out_of_range_rate_limit_is_refused_and_nothing_is_created,
    rate::concurrent_claims_never_start_more_than_the_limit_per_window,
    rate::a_claim_whose_instant_is_behind_the_rescuers_still_counts_the_starts_it_sees_live,
    pause::a_paused_queue_is_listed_when_empty_and_a_bad_name_pauses_nothing,
    claim::claim_takes_at_most_limit_executions,
    claim::claim_takes_only_from_the_requested_queues,
    claim::a_claim_from_several_queues_takes_them_in_claim_order_across_them,
    claim::a_claim_passes_over_work_not_yet_due_at_every_priority,
    claim::claim_skips_executions_scheduled_in_the_future,
    claim::claim_orders_by_priority_then_run_at,
    claim::claimed_executions_are_not_claimed_again,
    claim::concurrent_claims_take_every_execution_exactly_once,
    // leases
    lease::heartbeat_extends_the_lease,
    lease::heartbeat_with_a_wrong_token_is_stale,
    lease::finish_with_a_wrong_token_is_stale_and_changes_nothing,
    lease::rescue_leaves_leases_that_have_not_expired,
    lease::heartbeat_after_expiry_but_before_rescue_renews_the_lease,
    lease::finish_long_after_expiry_but_before_rescue_is_accepted,
    lease::rescue_marks_an_expired_lease_lost_and_queues_a_retry,
    lease::rescue_marks_the_last_attempt_dead_without_retry,
    lease::rescue_of_an_execution_asked_to_cancel_ends_it_cancelled_without_retry,
    lease::rescue_takes_at_most_limit_executions,
    lease::rescued_executions_old_worker_is_fenced_off,
    lease::finish_many_fences_each_item_separately,
    lease::finish_many_of_successes_answers_each_item_in_its_place,
    lease::finished_execution_cannot_be_finished_again,
    // finish and the retry policy
    finish::finish_succeeded_records_the_result_without_retry,
    finish::finish_failed_with_attempts_left_queues_a_retry_with_backoff,
    finish::retry_backoff_ceiling_doubles_with_each_attempt,
    finish::finish_failed_on_the_last_attempt_is_dead_without_retry,
    finish::finish_timed_out_with_attempts_left_queues_a_retry,
    finish::finish_timed_out_on_the_last_attempt_is_dead_without_retry,
    finish::finish_cancelled_is_never_retried,
    finish::finish_rejected_is_dead_at_once_with_its_cause,
    finish::retries_keep_the_idempotency_key_payload_and_env_of_the_first_attempt,
    // release
    release::release_puts_a_running_execution_back_with_its_attempt_unused,
    release::release_with_a_stale_token_changes_nothing,
    release::release_frees_the_job_lock_of_a_forbid_job,
    release::release_of_an_execution_asked_to_cancel_ends_it_cancelled,
    // the dead-letter queue
    dlq::dlq_holds_dead_executions_until_retried_or_discarded,
    dlq::a_dead_letter_retry_that_fails_again_is_dead_again,
    dlq::dlq_operations_refuse_what_is_not_in_the_queue,
    dlq::dlq_retry_job_retries_every_dead_execution_of_that_job_only,
    dlq::dlq_retry_of_a_deleted_jobs_execution_is_a_conflict,
    dlq::concurrent_dlq_retries_of_one_execution_make_one_attempt,
    dlq::a_refused_dlq_operation_leaves_the_execution_claimable_at_once,
    // cancel
    cancel::cancel_of_a_queued_execution_cancels_it_at_once,
    cancel::cancel_of_a_running_execution_asks_its_worker_to_stop,
    cancel::cancel_of_a_finished_execution_is_a_conflict,
    // concurrency policies (the job lock)
    overlap::forbid_job_runs_one_execution_at_a_time,
    overlap::forbid_job_lock_is_released_when_the_execution_is_rescued,
    overlap::forbid_job_skips_a_scheduled_execution_that_would_overlap,
    overlap::forbid_job_skips_a_scheduled_execution_behind_one_claimed_in_the_same_batch,
    overlap::allow_job_runs_executions_side_by_side,
    overlap::replace_job_claim_asks_the_running_execution_to_stop,
    overlap::replace_job_claimed_twice_in_one_batch_asks_the_earlier_to_stop,
    // a job's limit of running executions (numbered job slots)
    limit::a_job_limit_caps_its_running_executions_and_others_fill_the_batch,
    limit::a_job_limit_slot_is_given_back_by_a_rescue_and_a_release,
    limit::a_forced_run_is_outside_its_jobs_limit,
    limit::a_raised_job_limit_applies_to_runs_enqueued_after_it,
    limit::concurrent_claims_never_run_more_than_a_jobs_limit,
    // cron slots
    slots::slot_fire_queues_a_schedule_execution_for_the_slot,
    slots::slot_skip_records_a_skipped_execution_with_the_reason,
    slots::slot_recorded_twice_is_a_duplicate_and_creates_nothing,
    slots::concurrent_slot_records_insert_the_slot_once,
    slots::slot_list_is_newest_first_and_limited,
    slots::slot_record_many_answers_each_item_as_if_recorded_one_at_a_time,
    slots::a_slot_to_fire_of_a_job_suspended_or_unscheduled_since_is_skipped,
    // manual triggers
    trigger::forced_trigger_runs_beside_a_running_forbid_execution,
    trigger::forced_trigger_does_not_replace_a_running_execution,
    trigger::backfill_of_a_past_slot_counts_as_that_slot,
    trigger::backfill_enqueued_again_with_its_idempotency_key_returns_the_first_run,
    trigger::backfill_of_a_recorded_slot_is_a_conflict_and_queues_nothing,
    trigger::backfill_of_a_future_instant_a_non_slot_or_a_plain_job_is_invalid,
    // listing
    listing::execution_list_is_newest_first,
    listing::execution_list_filters_by_job_and_status,
    listing::execution_list_limit_zero_is_the_default_page_and_huge_limits_are_capped,
    listing::execution_list_pages_are_stable_while_new_executions_arrive,
    listing::execution_latest_is_none_for_a_job_without_executions,
    listing::execution_latest_returns_the_newest_execution_that_was_not_skipped,
    listing::execution_list_filters_by_trigger_and_by_run,
    listing::execution_recent_per_job_gives_each_jobs_newest_in_one_call,
    listing::execution_latest_per_job_gives_each_jobs_newest_run_skipping_skipped_slots,
    listing::queue_stats_count_due_waiting_and_running_per_queue,
    // logs
    logs::log_read_returns_chunks_in_seq_order_after_a_cursor,
    logs::log_tail_returns_the_last_chunks_in_order,
    logs::log_append_keeps_the_first_copy_of_a_seq,
    logs::log_chunks_round_trip_binary_data_and_streams,
    logs::log_chunks_compressed_or_not_read_back_exactly,
    logs::logs_of_different_executions_are_kept_apart,
    // API tokens
    tokens::token_create_returns_a_secret_that_verifies,
    tokens::token_verify_of_an_unknown_secret_is_none,
    tokens::token_verify_notes_when_the_token_was_used,
    tokens::token_list_lists_live_tokens_by_name_without_secrets,
    tokens::token_revoke_stops_the_secret_at_once_and_frees_the_name,
    tokens::token_create_with_a_taken_name_is_a_conflict,
    tokens::token_revoke_of_an_unknown_name_is_not_found,
    // alerts
    alerts::failed_attempts_reach_the_alert_inbox_and_successes_do_not,
    alerts::a_raised_alert_reads_back_as_it_was_returned,
    alerts::an_incident_is_raised_once_and_a_recovery_closes_it,
    alerts::deliveries_are_claimed_retried_and_recorded,
    // retention
    retention::retention_keeps_the_newest_finished_executions_of_each_job,
    retention::retention_honours_a_jobs_own_keep_count,
    retention::retention_removes_finished_executions_older_than_max_age,
    retention::retention_removes_slots_older_than_max_age,
    retention::retention_deletes_at_most_a_batch_per_call_and_drains,
    retention::retention_keeps_exactly_the_configured_history,
    retention::retention_honours_a_jobs_own_max_age,
    // wake-ups
    notices::enqueue_notifies_subscribers_of_its_queue,
    // services
    services::service_reconcile_starts_each_replica_once_as_an_instance_of_revision_one,
    services::service_instances_are_claimed_apart_from_jobs_one_per_service_per_claim,
    services::service_claim_by_the_same_node_takes_the_next_instance_after_the_spread_wait,
    services::service_instance_that_fails_restarts_with_doubling_jittered_backoff,
    services::service_instance_healthy_for_healthy_after_restarts_its_backoff_count,
    services::service_on_failure_instance_that_exits_zero_stays_completed,
    services::service_instance_whose_node_is_lost_restarts_at_once,
    services::service_scaled_down_stops_its_surplus_and_scaled_up_starts_more,
    services::service_suspended_stops_every_instance_and_resumed_starts_them,
    services::service_delete_stops_its_instances_for_good,
    services::service_instance_of_a_deleted_service_that_fails_is_not_restarted,
    services::service_enqueue_is_refused_with_a_hint,
    services::service_schedule_or_bad_replicas_are_refused_and_nothing_is_created,
    services::service_health_is_fenced_by_the_lease,
    services::service_update_of_what_runs_rolls_out_one_instance_at_a_time,
    services::service_rollout_not_healthy_in_time_reverts_and_the_old_revision_keeps_serving,
    services::service_rollback_goes_back_one_revision,
    services::service_restart_replaces_every_instance_as_a_rollout,
    services::service_stop_first_rollout_stops_the_old_instance_before_the_new_one_starts,
    services::service_log_trim_keeps_the_newest_bytes,
}
