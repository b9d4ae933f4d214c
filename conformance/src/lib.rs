#![doc = include_str!("../README.md")]

use std::future::Future;
use std::time::Duration;

pub mod bad_input;
pub mod broadcast;
pub mod claim;
pub mod clear;
pub mod complete;
pub mod delete;
pub mod get;
pub mod keys;
pub mod list;
pub mod local;
pub mod purge_expired;
pub mod put;
pub mod release;
pub mod renew;
pub mod servers;
mod support;
pub mod transactional;
pub mod wrapper;

#[doc(hidden)]
pub use tokio as __tokio;

/// Whether `STENT_REQUIRE_BACKENDS=1` is set: unreachable backends fail instead of skip.
pub fn backends_required() -> bool {
    std::env::var("STENT_REQUIRE_BACKENDS").is_ok_and(|v| v == "1" || v == "true")
}

/// A fresh identifier for one case run: `c` + 15 random lower-case hex digits.
pub fn unique_id() -> String {
    let n: u64 = rand_u64();
    format!("c{:015x}", n & 0x0fff_ffff_ffff_ffff)
}

fn rand_u64() -> u64 {
    use std::collections::hash_map::RandomState;
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    h.write_u32(std::process::id());
    h.finish()
}

/// Runs one case: builds an isolated store with `factory`, then runs `case` against it.
///
/// An unreachable backend (`Err(reason)` from the factory) skips the case loudly, or
/// fails it under `STENT_REQUIRE_BACKENDS=1`.
pub async fn run<S, F, FFut, C, CFut>(factory: F, name: &str, case: C)
where
    F: FnOnce(String) -> FFut,
    FFut: Future<Output = Result<S, String>>,
    C: FnOnce(S) -> CFut,
    CFut: Future<Output = ()>,
{
    let store = match factory(unique_id()).await {
        Ok(store) => store,
        Err(reason) => {
            if backends_required() {
                panic!("{name}: backend unavailable and STENT_REQUIRE_BACKENDS=1: {reason}");
            }
            eprintln!(
                "SKIPPED {name}: backend unavailable: {reason} (set STENT_REQUIRE_BACKENDS=1 to fail instead)"
            );
            return;
        }
    };
    // Generous bound: a wedged case fails with its name instead of hanging the run.
    match tokio::time::timeout(Duration::from_secs(120), case(store)).await {
        Ok(()) => {}
        Err(_) => panic!("{name}: did not finish within 120 s"),
    }
}

/// Stamps one `#[tokio::test]` per conformance case, each calling `$factory(id)` for an
/// isolated store (see the [crate docs](crate)).
#[macro_export]
macro_rules! conformance_tests {
    ($factory:path) => {
        $crate::conformance_tests!(@cases $factory;
            get::get_missing_key_returns_none,
            get::get_expired_record_returns_none,
            get::get_in_progress_record_returns_its_lease,
            claim::claim_absent_key_acquires_attempt_one,
            claim::claim_expired_record_starts_fresh,
            claim::claim_after_lease_expiry_takes_over,
            claim::claim_live_lease_reports_in_flight,
            claim::claim_completed_returns_the_record,
            claim::claim_is_exclusive_under_race,
            renew::renew_extends_the_lease,
            renew::renew_with_a_stale_token_is_lease_lost,
            complete::complete_stores_value_and_clears_lease,
            complete::complete_with_a_stale_token_is_lease_lost_and_writes_nothing,
            complete::complete_twice_is_refused,
            complete::complete_oversized_value_is_value_too_large,
            release::release_deletes_the_owners_claim,
            release::release_with_another_token_deletes_nothing,
            release::release_never_deletes_a_completed_record,
            put::put_then_get_round_trips_value_and_metadata,
            put::put_replaces_existing_record,
            put::put_expires_ttl_from_now,
            put::put_round_trips_every_byte_value,
            put::put_round_trips_empty_value,
            put::put_keeps_the_two_namespaces_apart,
            put::put_oversized_value_is_value_too_large,
            delete::delete_reports_whether_a_record_was_there,
            delete::delete_removes_an_in_progress_record,
            list::list_pages_in_key_order_with_cursor,
            list::list_matches_prefix_literally,
            list::list_hides_expired_unless_asked,
            clear::clear_empties_only_its_namespace,
            purge_expired::purge_expired_deletes_only_expired_records,
            purge_expired::purge_expired_deletes_at_most_limit,
            keys::keys_with_special_characters_round_trip,
            keys::long_keys_round_trip_or_are_refused_clearly,
            keys::default_keys_follow_the_seed_format,
            keys::custom_keys_are_portable_across_stores,
            wrapper::idempotent_call_runs_once_under_64_concurrent_callers,
            wrapper::idempotent_call_replays_the_stored_result,
            wrapper::empty_results_replay_exactly,
            wrapper::errors_are_not_stored_and_a_retry_executes,
            wrapper::store_errors_if_replays_terminal_errors,
            wrapper::panic_releases_the_claim,
            wrapper::cancellation_releases_the_claim,
            wrapper::takeover_after_crash_runs_attempt_two,
            wrapper::lease_lost_refuses_to_record_the_result,
            wrapper::long_running_call_keeps_its_lease,
            wrapper::in_flight_reject_returns_in_flight_error,
            wrapper::version_bump_invalidates,
            wrapper::custom_keys_of_two_functions_never_collide,
            wrapper::shared_keys_are_shared_across_functions,
            wrapper::payload_mismatch_is_refused,
            wrapper::cached_call_expires_after_ttl,
            wrapper::retention_expires_idempotency_records,
            wrapper::both_modes_write_cache_and_idempotency,
            wrapper::both_modes_recache_a_replay_until_the_record_expires,
            wrapper::payload_validation_guards_cache_hits,
            wrapper::payload_validation_guards_joins,
            wrapper::in_flight_reject_in_process_reports_the_lease,
            wrapper::invalidation_reaches_one_call_or_one_function,
            wrapper::single_flight_runs_a_cached_miss_once,
            wrapper::stale_if_error_returns_a_recent_value_when_the_function_fails,
            wrapper::stale_while_revalidate_serves_the_old_value_and_refreshes_once,
            wrapper::stale_if_error_with_single_flight_runs_the_function_once,
            wrapper::timeout_cancels_the_function_and_frees_the_key,
            wrapper::early_refresh_refreshes_a_hot_value_before_it_expires,
            wrapper::single_flight_run_overtaken_by_a_refresh_returns_its_value,
            local::local_tier_replays_what_the_store_replays,
            local::local_tier_sees_another_process_within_its_local_ttl,
            bad_input::unencodable_args_are_a_key_error,
            bad_input::corrupt_idempotency_record_is_a_decode_error_and_kept,
            bad_input::corrupt_cached_value_is_a_self_healing_miss,
            bad_input::stored_value_of_wrong_type_is_a_decode_error_naming_the_key,
            bad_input::oversized_value_is_refused_or_round_trips
        );
    };
    (@cases $factory:path; $($area:ident :: $case:ident),* $(,)?) => {
        $(
            #[$crate::__tokio::test(flavor = "multi_thread", worker_threads = 2, crate = "stent_conformance::__tokio")]
            async fn $case() {
                $crate::run($factory, stringify!($case), $crate::$area::$case).await;
            }
        )*
    };
}

/// Stamps one `#[tokio::test]` per broadcast case (see [`broadcast`]), each calling
/// `$factory(id)` for the [`broadcast::Processes`] of a store that broadcasts.
#[macro_export]
macro_rules! broadcast_tests {
    ($factory:path) => {
        $crate::conformance_tests!(@cases $factory;
            broadcast::broadcast_delete_and_overwrite_reach_another_process,
            broadcast::broadcast_lost_subscription_never_serves_stale,
            broadcast::broadcast_unanswered_subscription_is_taken_as_lost
        );
    };
}

/// Stamps one `#[tokio::test]` per transactional case (see [`transactional`]), each calling
/// `$factory(id)` for an isolated SQL store of backend `$backend`, a
/// [`transactional::SqlBackend`].
#[macro_export]
macro_rules! transactional_tests {
    ($backend:ty, $factory:path) => {
        $crate::transactional_tests!(@cases $backend, $factory;
            transactional::transactional_call_commits_the_effect_and_the_record_together,
            transactional::transactional_keys_with_quotes_and_backslashes_replay,
            transactional::transactional_function_error_rolls_back_its_writes_and_its_claim,
            transactional::transactional_terminal_error_is_recorded_without_the_writes,
            transactional::transactional_duplicates_wait_for_the_first_and_replay,
            transactional::transactional_call_waits_for_a_lease_mode_holder,
            transactional::lease_mode_call_waits_for_a_transactional_holder,
            transactional::call_in_commits_and_rolls_back_with_the_callers_transaction,
            transactional::call_in_outside_a_transaction_is_a_config_error,
            transactional::transactional_call_takes_over_a_lapsed_lease,
            transactional::cancelled_transactional_call_leaves_nothing_behind
        );
    };
    (@cases $backend:ty, $factory:path; $($area:ident :: $case:ident),* $(,)?) => {
        $(
            #[$crate::__tokio::test(flavor = "multi_thread", worker_threads = 2, crate = "stent_conformance::__tokio")]
            async fn $case() {
                $crate::run($factory, stringify!($case), $crate::$area::$case::<$backend>).await;
            }
        )*
    };
}
