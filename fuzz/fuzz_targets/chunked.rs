//! Fuzz target: chunked bodies (see `ringwsgi::http::fuzz_checks::chunked_input`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| ringwsgi::http::fuzz_checks::chunked_input(data));
