//! Fuzz target `request_parse`: see `tollgate_providers::fuzzing::request_parse` for what it runs and the invariants it checks.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    tollgate_providers::fuzzing::request_parse(data);
});
