//! Per-stage costs of the data path, without PHP: filling a batch arena,
//! and writing batches as CSV and as XLSX. `cargo bench`; figures in
//! BENCHMARKS.md.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use fluxo::batch::RecordBatch;
use fluxo::schema::{Column, ColumnType, Value};
use fluxo::writer::csv::{CsvOptions, CsvWriter};
use fluxo::writer::xlsx::{XlsxOptions, XlsxWriter};
use fluxo::writer::FormatWriter;

const ROWS: usize = 10_000;

fn columns() -> Vec<Column> {
    [
        ("id", ColumnType::String),
        ("n", ColumnType::Auto),
        ("f", ColumnType::Auto),
        ("name", ColumnType::Auto),
        ("day", ColumnType::Date),
        ("ok", ColumnType::Bool),
    ]
    .into_iter()
    .map(|(name, t)| Column::new(name, t))
    .collect()
}

/// The same mixed rows every stage uses.
fn fill(batch: &mut RecordBatch, types: &[ColumnType]) {
    for i in 0..ROWS {
        let n = i as i64;
        let name = format!("customer {i}");
        let values = [
            Value::Int(202_611_290_000_000_000 + n),
            Value::Int(n * 3),
            Value::Float(n as f64 / 7.0),
            Value::Bytes(name.as_bytes()),
            Value::Bytes(b"2026-11-29"),
            Value::Bool(i % 2 == 0),
        ];
        for (value, t) in values.into_iter().zip(types) {
            batch.push(value, *t).unwrap();
        }
        batch.end_row();
    }
}

fn batch_arena(c: &mut Criterion) {
    let cols = columns();
    let types: Vec<ColumnType> = cols.iter().map(|c| c.column_type).collect();
    let mut group = c.benchmark_group("batch");
    group.throughput(Throughput::Elements((ROWS * cols.len()) as u64));
    group.bench_function("push 10k rows x 6 cells", |b| {
        b.iter(|| {
            let mut batch = RecordBatch::new(cols.len(), 1 << 20);
            fill(&mut batch, &types);
            batch
        })
    });
    group.finish();
}

fn writers(c: &mut Criterion) {
    let cols = columns();
    let types: Vec<ColumnType> = cols.iter().map(|c| c.column_type).collect();
    let mut batch = RecordBatch::new(cols.len(), 1 << 20);
    fill(&mut batch, &types);
    let dir = tempfile::tempdir().unwrap();
    let mut group = c.benchmark_group("write");
    group.throughput(Throughput::Elements((ROWS * cols.len()) as u64));
    group.sample_size(20);
    group.bench_function(BenchmarkId::new("csv", "10k rows x 6"), |b| {
        b.iter(|| {
            let path = dir.path().join("bench.csv");
            let mut w: Box<dyn FormatWriter> =
                Box::new(CsvWriter::create(&path, CsvOptions::default()).unwrap());
            w.begin_sheet("s", &cols).unwrap();
            w.write_batch(&batch).unwrap();
            w.finish().unwrap()
        })
    });
    for level in [1u8, 2, 3, 6] {
        group.bench_function(
            BenchmarkId::new("xlsx", format!("10k rows x 6, level {level}")),
            |b| {
                b.iter(|| {
                    let path = dir.path().join("bench.xlsx");
                    let options = XlsxOptions {
                        compression_level: level,
                        ..XlsxOptions::default()
                    };
                    let mut w: Box<dyn FormatWriter> =
                        Box::new(XlsxWriter::new(&path, options).unwrap());
                    w.begin_sheet("s", &cols).unwrap();
                    w.write_batch(&batch).unwrap();
                    w.finish().unwrap()
                })
            },
        );
    }
    group.finish();
}

criterion_group!(benches, batch_arena, writers);
criterion_main!(benches);
