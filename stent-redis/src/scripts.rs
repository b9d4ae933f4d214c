//! The Lua scripts (`lua/*.lua`), one per multi-step transition, and their replies.
//!
//! Each script is `lua/common.lua` followed by its own file. [`redis::Script`] sends
//! `EVALSHA` and, when the server answers `NOSCRIPT` (first use, restart, failover),
//! loads the script and retries once.

use std::sync::LazyLock;

use redis::{Script, Value};

macro_rules! script {
    ($file:literal) => {
        LazyLock::new(|| {
            Script::new(concat!(
                include_str!("../lua/common.lua"),
                include_str!(concat!("../lua/", $file))
            ))
        })
    };
}

pub(crate) static GET: LazyLock<Script> = script!("get.lua");
pub(crate) static CLAIM: LazyLock<Script> = script!("claim.lua");
pub(crate) static RENEW: LazyLock<Script> = script!("renew.lua");
pub(crate) static COMPLETE: LazyLock<Script> = script!("complete.lua");
pub(crate) static RELEASE: LazyLock<Script> = script!("release.lua");
pub(crate) static PUT: LazyLock<Script> = script!("put.lua");
pub(crate) static DELETE: LazyLock<Script> = script!("delete.lua");

/// A script's reply: a tag followed by byte strings.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) tag: String,
    pub(crate) rest: Vec<Vec<u8>>,
}

impl Reply {
    /// Splits a script's array reply. `None` for any other shape.
    pub(crate) fn parse(value: Value) -> Option<Reply> {
        let Value::Array(items) = value else {
            return None;
        };
        let mut words = items.into_iter().map(|v| match v {
            Value::BulkString(b) => Some(b),
            Value::SimpleString(s) => Some(s.into_bytes()),
            Value::Int(n) => Some(n.to_string().into_bytes()),
            Value::Okay => Some(b"OK".to_vec()),
            _ => None,
        });
        let tag = String::from_utf8(words.next()??).ok()?;
        let rest = words.collect::<Option<Vec<_>>>()?;
        Some(Reply { tag, rest })
    }

    /// The `i`-th element after the tag, as text.
    pub(crate) fn text(&self, i: usize) -> Option<&str> {
        self.rest.get(i).and_then(|b| std::str::from_utf8(b).ok())
    }

    /// The `i`-th element after the tag, as an integer.
    pub(crate) fn int(&self, i: usize) -> Option<i64> {
        self.text(i)?.parse().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_script_is_common_plus_its_own_file() {
        for s in [&GET, &CLAIM, &RENEW, &COMPLETE, &RELEASE, &PUT, &DELETE] {
            assert_eq!(s.get_hash().len(), 40);
        }
        assert_ne!(GET.get_hash(), CLAIM.get_hash());
    }

    #[test]
    fn replies_split_into_tag_and_words() {
        let r = Reply::parse(Value::Array(vec![
            Value::BulkString(b"acquired".to_vec()),
            Value::BulkString(b"12".to_vec()),
            Value::Int(3),
        ]))
        .unwrap();
        assert_eq!(r.tag, "acquired");
        assert_eq!((r.int(0), r.int(1), r.int(2)), (Some(12), Some(3), None));
        assert!(Reply::parse(Value::Nil).is_none());
        assert!(Reply::parse(Value::Array(vec![])).is_none());
    }
}
