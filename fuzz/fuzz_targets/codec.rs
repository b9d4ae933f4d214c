//! Stored bytes come back from a store that anyone with database access can write to:
//! decoding them must give a value or a `Decode` error naming the key, never a panic,
//! and a value that decodes must survive being stored again.
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use serde::de::DeserializeOwned;
use serde_json::Value;
use stent_core::ErrorKind;
use stent_core::codec::{self, Stored};

fn decodes_or_typed_error<T: DeserializeOwned, E: DeserializeOwned>(data: &[u8]) {
    if let Err(e) = codec::decode::<T, E>("fuzz-key", data) {
        assert_eq!(e.kind(), ErrorKind::Decode, "{e}");
        assert_eq!(e.key(), Some("fuzz-key"));
    }
}

fuzz_target!(|data: &[u8]| {
    decodes_or_typed_error::<(u32, String), Vec<u8>>(data);
    decodes_or_typed_error::<Option<BTreeMap<String, f64>>, ()>(data);
    decodes_or_typed_error::<Vec<Option<i128>>, char>(data);
    decodes_or_typed_error::<(), BTreeMap<u16, bool>>(data);
    match codec::to_json("fuzz-key", data) {
        Ok(stored) => {
            let bytes = match &stored {
                Stored::Value(v) => codec::encode_value(v),
                Stored::Error(e) => codec::encode_error(e),
            }
            .expect("a decoded value encodes again");
            let again = codec::decode::<Value, Value>("fuzz-key", &bytes).expect("and decodes");
            assert_eq!(again, stored, "a decoded value round-trips");
        }
        Err(e) => assert_eq!(e.kind(), ErrorKind::Decode, "{e}"),
    }
});
