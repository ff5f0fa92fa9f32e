#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fluxo_fuzz::batch_arena(data));
