use std::time::Instant;

const CHUNK: usize = 1 << 20;

fn main() {
    let path = std::env::args().nth(1).expect("usage: deflate-backends SHEET.xml");
    let data = std::fs::read(&path).expect("readable sheet XML");
    println!("{} bytes of XML, {CHUNK}-byte chunks", data.len());
    for level in [1, 2, 3, 4, 6] {
        let start = Instant::now();
        let compressed: usize = data.chunks(CHUNK).map(|c| compress(c, level)).sum();
        let seconds = start.elapsed().as_secs_f64();
        println!(
            "level {level}: {seconds:.3} s, {:.0} MB/s, {:.3} of the input",
            data.len() as f64 / seconds / 1e6,
            compressed as f64 / data.len() as f64
        );
    }
}

#[cfg(not(feature = "libdeflate"))]
fn compress(chunk: &[u8], level: u32) -> usize {
    use flate2::{Compress, Compression, FlushCompress};
    let mut out = Vec::with_capacity(chunk.len());
    Compress::new(Compression::new(level), false)
        .compress_vec(chunk, &mut out, FlushCompress::Finish)
        .expect("in-memory deflate");
    out.len()
}

#[cfg(feature = "libdeflate")]
fn compress(chunk: &[u8], level: u32) -> usize {
    use libdeflater::{CompressionLvl, Compressor};
    let mut compressor = Compressor::new(CompressionLvl::new(level as i32).expect("level 1-12"));
    let mut out = vec![0; compressor.deflate_compress_bound(chunk.len())];
    compressor.deflate_compress(chunk, &mut out).expect("bound is enough")
}
