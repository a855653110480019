//! Fuzz target `sse_decode`: see `tollgate_providers::fuzzing::sse_decode` for what it runs and the invariants it checks.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    tollgate_providers::fuzzing::sse_decode(data);
});
