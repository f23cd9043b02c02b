//! libFuzzer entry for `tidegate_fuzz::chunked` (the checks live there, so the
//! stable smoke test runs the same code).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tidegate_fuzz::chunked::run(data));
