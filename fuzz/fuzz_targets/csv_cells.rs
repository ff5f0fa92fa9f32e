#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fluxo_fuzz::csv_cells(data));
