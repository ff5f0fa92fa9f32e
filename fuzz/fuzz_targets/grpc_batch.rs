#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fluxo_fuzz::grpc_batch(data));
