//! Fuzz target: PROXY protocol headers (see `ringwsgi::http::fuzz_checks::proxy_header_input`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| ringwsgi::http::fuzz_checks::proxy_header_input(data));
