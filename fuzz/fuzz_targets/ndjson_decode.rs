//! Fuzz target `ndjson_decode`: see `tollgate_providers::fuzzing::ndjson_decode` for what it runs and the invariants it checks.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    tollgate_providers::fuzzing::ndjson_decode(data);
});
