//! Deflate for sheet XML, spread over threads as pigz does: the XML is cut
//! into chunks that are compressed independently and written in order. Each
//! piece ends on a byte boundary (a sync flush), so pieces concatenate into
//! one valid deflate stream; only the last piece of a zip entry is final.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};

use flate2::{Compress, Compression, FlushCompress, Status};

/// Raw XML per chunk. Each chunk starts without the 32 KiB of history the
/// previous one built, which costs well under 1% of size at this length;
/// with one worker per core and one chunk queued, memory stays a few MB.
pub const CHUNK: usize = 512 << 10;

/// Size, CRC-32 and compressed size of a deflate stream, or of a run of its
/// pieces; runs combine in order.
#[derive(Clone, Default)]
pub struct Summary {
    crc: crc32fast::Hasher,
    pub raw_len: u64,
    pub compressed_len: u64,
}

impl Summary {
    pub fn append(&mut self, next: &Summary) {
        self.crc.combine(&next.crc);
        self.raw_len += next.raw_len;
        self.compressed_len += next.compressed_len;
    }

    pub fn crc32(&self) -> u32 {
        self.crc.clone().finalize()
    }
}

/// Deflates `input` as one piece into `out` (cleared first). The piece ends
/// the stream when `last`; otherwise it ends with a sync flush so the next
/// piece can follow it.
pub fn deflate_piece(
    compress: &mut Compress,
    input: &[u8],
    last: bool,
    out: &mut Vec<u8>,
) -> Summary {
    compress.reset();
    out.clear();
    let flush = if last {
        FlushCompress::Finish
    } else {
        FlushCompress::Sync
    };
    let mut consumed = 0;
    loop {
        if out.capacity() - out.len() < 1024 {
            out.reserve(64 * 1024 + input.len() / 4);
        }
        let before = compress.total_in();
        let status = compress
            .compress_vec(&input[consumed..], out, flush)
            .expect("deflating memory to memory cannot fail");
        consumed += (compress.total_in() - before) as usize;
        // A flush is complete once the compressor stops short of the space it had.
        let flushed = consumed == input.len() && out.len() < out.capacity();
        match status {
            Status::StreamEnd => break,
            Status::Ok | Status::BufError if !last && flushed => break,
            Status::Ok | Status::BufError => {}
        }
    }
    let mut crc = crc32fast::Hasher::new();
    crc.update(input);
    Summary {
        crc,
        raw_len: input.len() as u64,
        compressed_len: out.len() as u64,
    }
}

struct Job {
    input: Vec<u8>,
    output: Vec<u8>,
    done: SyncSender<Done>,
}

struct Done {
    input: Vec<u8>,
    output: Vec<u8>,
    summary: Summary,
}

/// Compresses chunks on worker threads, in parallel with whoever fills the
/// next chunk, and writes the pieces in the order they were submitted.
pub struct ParallelDeflate {
    jobs: Option<Sender<Job>>,
    workers: Vec<JoinHandle<()>>,
    in_flight: VecDeque<Receiver<Done>>,
    /// Buffers back from finished pieces, reused instead of reallocated.
    spare: Vec<Vec<u8>>,
    max_in_flight: usize,
}

impl ParallelDeflate {
    pub fn new(level: u8, threads: usize) -> io::Result<Self> {
        let threads = threads.max(1);
        let (jobs, queue) = mpsc::channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        let workers = (0..threads)
            .map(|n| {
                let queue = Arc::clone(&queue);
                let worker = thread::Builder::new().name(format!("fluxo-deflate-{n}"));
                worker.spawn(move || {
                    let mut compress = Compress::new(Compression::new(level.into()), false);
                    loop {
                        // The lock only guards taking the next job off the queue.
                        let job = queue.lock().map(|q| q.recv());
                        let Ok(Ok(mut job)) = job else { return };
                        let summary =
                            deflate_piece(&mut compress, &job.input, false, &mut job.output);
                        let done = Done {
                            input: job.input,
                            output: job.output,
                            summary,
                        };
                        if job.done.send(done).is_err() {
                            return;
                        }
                    }
                })
            })
            .collect::<io::Result<Vec<_>>>()?;
        Ok(Self {
            jobs: Some(jobs),
            workers,
            in_flight: VecDeque::new(),
            spare: Vec::new(),
            // One queued behind the running ones keeps every worker busy.
            max_in_flight: threads + 1,
        })
    }

    /// An empty buffer to fill with the next chunk.
    pub fn buffer(&mut self) -> Vec<u8> {
        let mut buf = self.spare.pop().unwrap_or_default();
        buf.clear();
        buf.reserve(CHUNK + CHUNK / 8);
        buf
    }

    /// Queues `chunk` for compression and writes whatever pieces are done,
    /// waiting when too many are in flight (that bounds memory).
    pub fn submit(
        &mut self,
        chunk: Vec<u8>,
        out: &mut impl Write,
        total: &mut Summary,
    ) -> io::Result<()> {
        let (done, receiver) = mpsc::sync_channel(1);
        let output = self.spare.pop().unwrap_or_default();
        let job = Job {
            input: chunk,
            output,
            done,
        };
        self.jobs
            .as_ref()
            .expect("jobs close only on drop")
            .send(job)
            .map_err(|_| stopped())?;
        self.in_flight.push_back(receiver);
        while self.in_flight.len() > self.max_in_flight {
            self.write_next(out, total)?;
        }
        while let Some(Ok(done)) = self.in_flight.front().map(Receiver::try_recv) {
            self.in_flight.pop_front();
            self.write(done, out, total)?;
        }
        Ok(())
    }

    /// Waits for every queued chunk and writes it.
    pub fn drain(&mut self, out: &mut impl Write, total: &mut Summary) -> io::Result<()> {
        while !self.in_flight.is_empty() {
            self.write_next(out, total)?;
        }
        Ok(())
    }

    fn write_next(&mut self, out: &mut impl Write, total: &mut Summary) -> io::Result<()> {
        let receiver = self.in_flight.pop_front().expect("a chunk is in flight");
        let done = receiver.recv().map_err(|_| stopped())?;
        self.write(done, out, total)
    }

    fn write(&mut self, done: Done, out: &mut impl Write, total: &mut Summary) -> io::Result<()> {
        out.write_all(&done.output)?;
        total.append(&done.summary);
        self.spare.push(done.input);
        self.spare.push(done.output);
        Ok(())
    }
}

fn stopped() -> io::Error {
    io::Error::other("a deflate worker thread stopped")
}

impl Drop for ParallelDeflate {
    fn drop(&mut self) {
        self.jobs = None;
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::read::DeflateDecoder;
    use std::io::Read;

    #[test]
    fn pieces_concatenate_into_one_stream_with_the_right_crc() {
        let text: Vec<u8> = (0..3 * CHUNK + 12345)
            .map(|i| b"<row r=\"1\"><c><v>42</v></c></row>"[i % 33] ^ (i / 4096) as u8)
            .collect();
        let mut deflate = ParallelDeflate::new(3, 2).unwrap();
        let mut compressed = Vec::new();
        let mut total = Summary::default();
        for chunk in text.chunks(CHUNK) {
            let mut buf = deflate.buffer();
            buf.extend_from_slice(chunk);
            deflate.submit(buf, &mut compressed, &mut total).unwrap();
        }
        deflate.drain(&mut compressed, &mut total).unwrap();
        let mut last = Vec::new();
        let tail = deflate_piece(
            &mut Compress::new(Compression::new(3), false),
            b"</end>",
            true,
            &mut last,
        );
        compressed.extend_from_slice(&last);
        total.append(&tail);

        let mut expected = text.clone();
        expected.extend_from_slice(b"</end>");
        let mut inflated = Vec::new();
        DeflateDecoder::new(&compressed[..])
            .read_to_end(&mut inflated)
            .unwrap();
        assert!(inflated == expected, "the stream inflates to the input");
        assert_eq!(total.raw_len, expected.len() as u64);
        assert_eq!(total.compressed_len, compressed.len() as u64);
        assert_eq!(total.crc32(), crc32fast::hash(&expected));
    }
}
