//! What a connector plugin streams back from `Pull`: a sequence of `PullBatch`
//! messages (each length-delimited, as gRPC frames them), checked by `to_batch`.
#![no_main]

use arrears::connector::plugin::{pb, to_batch};
use libfuzzer_sys::fuzz_target;
use prost::Message;

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    let mut batches = Vec::new();
    while !rest.is_empty() {
        match pb::PullBatch::decode_length_delimited(&mut rest) {
            Ok(b) => batches.push(b),
            // gRPC would refuse the whole stream; what decoded so far is still a
            // valid test of the checks.
            Err(_) => break,
        }
    }
    let _ = to_batch("plugin:fuzz", &batches);
});
