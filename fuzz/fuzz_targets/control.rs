#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| vxspan::fuzzing::control_requests(data));
