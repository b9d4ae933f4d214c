//! The Lua scripts (`lua/*.lua`), one per multi-step transition. Each is `lua/common.lua`
//! followed by its own file, sent as `EVALSHA`; when the server answers `NOSCRIPT` (first
//! use, restart, failover) it is loaded with `SCRIPT LOAD` and the call is sent once more.

use std::sync::LazyLock;

use redis::{ErrorKind, RedisResult, ServerErrorKind, Value};

use crate::conn::Conn;

/// One script: its source and SHA-1.
pub(crate) struct Lua {
    source: &'static str,
    sha: String,
}

impl Lua {
    /// Runs the script on `key` with `args`.
    pub(crate) async fn invoke(
        &self,
        conn: &mut Conn,
        key: &[u8],
        args: &[&[u8]],
    ) -> RedisResult<Value> {
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(&self.sha).arg(1).arg(key).arg(args);
        match cmd.query_async(conn).await {
            Err(e) if e.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
                let load = redis::cmd("SCRIPT").arg("LOAD").arg(self.source).to_owned();
                load.query_async::<Value>(conn).await?;
                cmd.query_async(conn).await
            }
            result => result,
        }
    }
}

macro_rules! script {
    ($file:literal) => {
        LazyLock::new(|| {
            let source = concat!(
                include_str!("../lua/common.lua"),
                include_str!(concat!("../lua/", $file))
            );
            let sha = redis::Script::new(source).get_hash().to_owned();
            Lua { source, sha }
        })
    };
}

pub(crate) static CLAIM: LazyLock<Lua> = script!("claim.lua");
pub(crate) static RENEW: LazyLock<Lua> = script!("renew.lua");
pub(crate) static COMPLETE: LazyLock<Lua> = script!("complete.lua");
pub(crate) static RELEASE: LazyLock<Lua> = script!("release.lua");
pub(crate) static PUT: LazyLock<Lua> = script!("put.lua");
pub(crate) static DELETE: LazyLock<Lua> = script!("delete.lua");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_script_is_common_plus_its_own_file() {
        for s in [&CLAIM, &RENEW, &COMPLETE, &RELEASE, &PUT, &DELETE] {
            assert_eq!(s.sha.len(), 40);
            assert!(s.source.starts_with("-- Prepended to every stent script"));
        }
        assert_ne!(CLAIM.sha, RENEW.sha);
    }
}
