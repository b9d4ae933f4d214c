//! What the builder refuses: names and versions that would share keys with another
//! function, and settings that do nothing in the function's mode. Each is an
//! `ErrorKind::Config` error on every call, before the store is touched.

use std::convert::Infallible;
use std::time::Duration;

use stent_core::testkit::{FaultStore, Op};
use stent_core::{ErrorKind, InFlight, MemoryStore, Stent};

fn stent() -> (Stent, FaultStore<MemoryStore>) {
    let store = FaultStore::new(MemoryStore::new());
    (Stent::new(store.clone()), store)
}

fn store_calls(store: &FaultStore<MemoryStore>) -> u64 {
    Op::ALL.iter().map(|&op| store.calls(op)).sum()
}

#[tokio::test]
async fn a_name_with_a_bar_would_share_keys_and_is_refused() {
    let (stent, store) = stent();
    let a = stent
        .durable("f|x")
        .wrap(|n: u32| async move { Ok::<_, Infallible>(n) });
    let b = stent
        .durable("f")
        .version("x|None")
        .wrap(|n: u32| async move { Ok::<_, Infallible>(n + 1) });
    for e in [a.call(1).await.unwrap_err(), b.call(1).await.unwrap_err()] {
        assert_eq!(e.kind(), ErrorKind::Config, "{e}");
        assert!(e.to_string().contains("'|'"), "{e}");
    }
    assert_eq!(a.key_for(&1).unwrap_err().kind(), ErrorKind::Config);
    assert_eq!(store_calls(&store), 0, "nothing reaches the store");
}

#[tokio::test]
async fn settings_without_effect_in_the_mode_are_refused() {
    let (stent, store) = stent();
    let f = |b: stent_core::DurableBuilder| b.wrap(|n: u32| async move { Ok::<_, Infallible>(n) });
    let refused = [
        (
            f(stent.durable("a").idempotent().ttl(Duration::from_secs(1))),
            ".ttl",
        ),
        (f(stent.durable("b").ttl(Duration::from_secs(1))), ".ttl"),
        (
            f(stent
                .durable("c")
                .cached()
                .retention(Duration::from_secs(1))),
            ".retention",
        ),
        (
            f(stent.durable("d").cached().lease(Duration::from_secs(1))),
            ".lease",
        ),
        (f(stent.durable("e").idempotent().fail_open()), ".fail_open"),
        (f(stent.durable("h").single_flight()), ".single_flight"),
        (
            f(stent
                .durable("j")
                .cached()
                .stale_while_revalidate(Duration::from_secs(1))),
            ".stale_while_revalidate",
        ),
        (
            f(stent
                .durable("k")
                .idempotent()
                .cached()
                .ttl(Duration::from_secs(1))
                .stale_if_error(Duration::from_secs(1))),
            ".stale_if_error",
        ),
        (
            f(stent.durable("i").idempotent().cached().single_flight()),
            ".single_flight",
        ),
        (
            f(stent.durable("l").cached().early_refresh(1.0)),
            ".early_refresh",
        ),
        (
            f(stent
                .durable("m")
                .cached()
                .ttl(Duration::from_secs(1))
                .early_refresh(f64::NAN)),
            ".early_refresh(NaN)",
        ),
        (
            f(stent
                .durable("n")
                .cached()
                .ttl(Duration::from_secs(1))
                .early_refresh(0.0)),
            ".early_refresh(0)",
        ),
    ];
    for (durable, setting) in refused {
        assert!(durable.check().is_err(), "{setting}");
        let e = durable.call(1).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config, "{e}");
        assert!(e.to_string().contains(setting), "{e}");
    }
    let cache_only_errors = stent
        .durable("g")
        .cached()
        .wrap(|n: u32| async move { Err::<u32, String>(format!("no {n}")) })
        .store_errors_if(|_| true);
    assert_eq!(
        cache_only_errors.call(1).await.unwrap_err().kind(),
        ErrorKind::Config
    );
    assert_eq!(store_calls(&store), 0, "nothing reaches the store");

    // Each setting in its own mode, and both modes together, are accepted.
    let accepted = [
        f(stent
            .durable("h")
            .cached()
            .ttl(Duration::from_secs(60))
            .fail_open()),
        f(stent
            .durable("i")
            .idempotent()
            .retention(Duration::from_secs(60))
            .lease(Duration::from_secs(5))),
        f(stent
            .durable("j")
            .idempotent()
            .cached()
            .ttl(Duration::from_secs(60))
            .retention(Duration::from_secs(60))
            .fail_open()
            .in_flight(InFlight::Reject)),
        f(stent
            .durable("k")
            .cached()
            .ttl(Duration::from_secs(60))
            .single_flight()
            .stale_if_error(Duration::from_secs(60))
            .stale_while_revalidate(Duration::from_secs(60))
            .early_refresh(1.0)
            .timeout(Duration::from_secs(60))),
    ];
    for durable in accepted {
        durable.check().unwrap();
        assert_eq!(durable.call(5).await.unwrap(), 5);
    }
}
