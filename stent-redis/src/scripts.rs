//! The Lua scripts (`lua/*.lua`), one per multi-step transition.
//!
//! Each script is `lua/common.lua` followed by its own file, sent as `EVALSHA`; when the
//! server answers `NOSCRIPT` (first use, restart, failover) it is loaded with `SCRIPT
//! LOAD` (on every master of a cluster) and the call is sent once more.

use std::sync::LazyLock;

use redis::{Cmd, ErrorKind, RedisResult, ServerErrorKind, Value};

use crate::conn::Conn;

/// One script: its source and SHA-1.
pub(crate) struct Lua {
    source: &'static str,
    sha: String,
}

impl Lua {
    fn new(source: &'static str) -> Self {
        Lua {
            source,
            sha: redis::Script::new(source).get_hash().to_owned(),
        }
    }

    /// The `EVALSHA` command running the script on `key` with `args`.
    fn cmd(&self, key: &[u8], args: &[&[u8]]) -> Cmd {
        let mut cmd = Cmd::with_capacity(
            4 + args.len(),
            64 + key.len() + args.iter().map(|a| a.len()).sum::<usize>(),
        );
        cmd.arg("EVALSHA").arg(&self.sha).arg(1).arg(key);
        for arg in args {
            cmd.arg(*arg);
        }
        cmd
    }

    /// Loads the script into the server (every master of a cluster).
    async fn load(&self, conn: &mut Conn) -> RedisResult<()> {
        redis::cmd("SCRIPT")
            .arg("LOAD")
            .arg(self.source)
            .query_async::<Value>(conn)
            .await
            .map(drop)
    }

    /// Runs the script on `key` with `args`.
    pub(crate) async fn invoke(
        &self,
        conn: &mut Conn,
        key: &[u8],
        args: &[&[u8]],
    ) -> RedisResult<Value> {
        let cmd = self.cmd(key, args);
        match cmd.query_async(conn).await {
            Err(e) if is_no_script(&e) => {
                self.load(conn).await?;
                cmd.query_async(conn).await
            }
            result => result,
        }
    }
}

/// Whether the server answered `NOSCRIPT`: the script must be loaded first.
fn is_no_script(e: &redis::RedisError) -> bool {
    e.kind() == ErrorKind::Server(ServerErrorKind::NoScript)
}

macro_rules! script {
    ($file:literal) => {
        LazyLock::new(|| {
            Lua::new(concat!(
                include_str!("../lua/common.lua"),
                include_str!(concat!("../lua/", $file))
            ))
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
