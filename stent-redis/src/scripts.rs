//! The Lua scripts (`lua/*.lua`), one per multi-step transition. Each is `lua/common.lua`
//! followed by its own file, sent as `EVALSHA`; when the server answers `NOSCRIPT` (first
//! use, restart, failover) redis-rs loads it with `SCRIPT LOAD` and sends the call once more.

use std::sync::LazyLock;

use redis::Script;

/// The source of `lua/common.lua` followed by `lua/{file}`.
macro_rules! source {
    ($file:literal) => {
        concat!(
            include_str!("../lua/common.lua"),
            include_str!(concat!("../lua/", $file))
        )
    };
}

macro_rules! script {
    ($file:literal) => {
        LazyLock::new(|| Script::new(source!($file)))
    };
}

pub(crate) static CLAIM: LazyLock<Script> = script!("claim.lua");
pub(crate) static RENEW: LazyLock<Script> = script!("renew.lua");
pub(crate) static COMPLETE: LazyLock<Script> = script!("complete.lua");
pub(crate) static RELEASE: LazyLock<Script> = script!("release.lua");
pub(crate) static PUT: LazyLock<Script> = script!("put.lua");
pub(crate) static DELETE: LazyLock<Script> = script!("delete.lua");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_script_is_common_plus_its_own_file() {
        for s in [&CLAIM, &RENEW, &COMPLETE, &RELEASE, &PUT, &DELETE] {
            assert_eq!(s.get_hash().len(), 40);
        }
        for source in [
            source!("claim.lua"),
            source!("renew.lua"),
            source!("complete.lua"),
            source!("release.lua"),
            source!("put.lua"),
            source!("delete.lua"),
        ] {
            assert!(source.starts_with("-- Prepended to every stent script"));
        }
        assert_ne!(CLAIM.get_hash(), RENEW.get_hash());
    }
}
