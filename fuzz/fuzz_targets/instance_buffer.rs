#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| sitfer_fuzz::runtime_targets::instance_buffer(data));
