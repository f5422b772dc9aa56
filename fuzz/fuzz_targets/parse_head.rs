//! Fuzz target: request heads (see `ringwsgi::http::fuzz_checks::parse_head_input`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| ringwsgi::http::fuzz_checks::parse_head_input(data));
