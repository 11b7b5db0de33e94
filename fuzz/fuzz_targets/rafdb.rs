#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| sitfer_fuzz::trainer_targets::rafdb(data));
