//! The bodies of the fuzz targets: one function per target, taking the raw
//! fuzzer input. `tests/fuzz_corpus.rs` includes this file too and replays
//! the committed corpus through the same functions on stable Rust, so a
//! property that fails here fails `make test` as well. Every check panics:
//! that is how libFuzzer and the replay test both see a failure. Checks are
//! `assert!`, never `debug_assert!`: the replay runs in release mode.

use arbitrary::{Result as Arbitrary, Unstructured};
use fluxo::batch::RecordBatch;
use fluxo::schema::{self, Cell, CellError, Column, ColumnType, LocalDateTime, TextStyle, Value};
use fluxo::writer::csv::{CsvEncoding, CsvOptions};
use fluxo::writer::xlsx::XlsxOptions;
use fluxo::writer::{self, Format, WrittenFile};

const COLUMN_TYPES: [ColumnType; 8] = [
    ColumnType::Auto,
    ColumnType::String,
    ColumnType::Int,
    ColumnType::Number,
    ColumnType::Bool,
    ColumnType::Date,
    ColumnType::DateTime,
    ColumnType::Time,
];

const SECONDS_PER_DAY: i64 = 86_400;

/// A cell with its text owned, so expectations outlive the values they came
/// from. Floats compare by bits: `-0.0` must not come back as `0.0`.
#[derive(Clone, Debug, PartialEq)]
enum Owned {
    Null,
    Bool(bool),
    Int(i64),
    Float(u64),
    Text(String),
    Date(LocalDateTime),
    DateTime(LocalDateTime),
    Time(LocalDateTime),
}

impl Owned {
    fn of(cell: &Cell<'_>) -> Self {
        match *cell {
            Cell::Null => Self::Null,
            Cell::Bool(b) => Self::Bool(b),
            Cell::Int(i) => Self::Int(i),
            Cell::Float(f) => Self::Float(f.to_bits()),
            Cell::Text(t) => Self::Text(t.to_owned()),
            Cell::Date(d) => Self::Date(d),
            Cell::DateTime(d) => Self::DateTime(d),
            Cell::Time(d) => Self::Time(d),
        }
    }
}

fn value<'a>(u: &mut Unstructured<'a>) -> Arbitrary<Value<'a>> {
    Ok(match u.int_in_range(0..=5)? {
        0 => Value::Null,
        1 => Value::Bool(u.arbitrary()?),
        2 => Value::Int(u.arbitrary()?),
        3 => Value::Float(f64::from_bits(u.arbitrary()?)),
        4 => Value::Bytes(u.arbitrary()?),
        _ => Value::DateTime(LocalDateTime {
            seconds: u.arbitrary()?,
            nanos: u.arbitrary()?,
        }),
    })
}

fn cell<'a>(u: &mut Unstructured<'a>) -> Arbitrary<Cell<'a>> {
    let dt = |u: &mut Unstructured<'a>| -> Arbitrary<LocalDateTime> {
        Ok(LocalDateTime {
            seconds: u.arbitrary()?,
            nanos: u.arbitrary()?,
        })
    };
    Ok(match u.int_in_range(0..=7)? {
        0 => Cell::Null,
        1 => Cell::Bool(u.arbitrary()?),
        2 => Cell::Int(u.arbitrary()?),
        3 => Cell::Float(f64::from_bits(u.arbitrary()?)),
        4 => Cell::Text(u.arbitrary()?),
        5 => Cell::Date(dt(u)?),
        6 => Cell::DateTime(dt(u)?),
        _ => Cell::Time(dt(u)?),
    })
}

/// What `RecordBatch::push` must store for `value` in a `column_type` column,
/// by `schema::convert` (the conversion rules, unit-tested there) plus what
/// the arena adds: invalid UTF-8 repaired on request, and the text form of
/// non-text values in `string` columns.
fn expected_push(
    value: Value<'_>,
    column_type: ColumnType,
    replace_invalid_utf8: bool,
) -> Result<Owned, CellError> {
    let repaired;
    let mut converted = schema::convert(value, column_type);
    if let (Err(CellError::InvalidUtf8 { .. }), Value::Bytes(bytes), true) =
        (&converted, value, replace_invalid_utf8)
    {
        repaired = String::from_utf8_lossy(bytes).into_owned();
        converted = schema::convert(Value::Bytes(repaired.as_bytes()), column_type);
    }
    let cell = converted?;
    if column_type == ColumnType::String && !matches!(cell, Cell::Text(_) | Cell::Null) {
        let mut text = Vec::new();
        schema::write_text_form(&cell, &TextStyle::for_string_columns(), &mut text);
        return Ok(Owned::Text(
            String::from_utf8(text).expect("the text form is UTF-8"),
        ));
    }
    Ok(Owned::of(&cell))
}

/// The documented contract of a push, independent of `schema::convert`.
fn check_push_contract(
    value: Value<'_>,
    column_type: ColumnType,
    replace_invalid_utf8: bool,
    got: &Result<Owned, CellError>,
) {
    use ColumnType as T;
    let expected = match (value, column_type) {
        (Value::Null, _) => Some(Ok(Owned::Null)),
        (Value::Bytes(bytes), T::Auto | T::String) => Some(match std::str::from_utf8(bytes) {
            Ok(text) => Ok(Owned::Text(text.to_owned())),
            Err(_) if replace_invalid_utf8 => {
                Ok(Owned::Text(String::from_utf8_lossy(bytes).into_owned()))
            }
            Err(e) => Err(CellError::InvalidUtf8 {
                valid_up_to: e.valid_up_to(),
            }),
        }),
        (Value::Int(i), T::Auto | T::Int | T::Number) => Some(Ok(Owned::Int(i))),
        (Value::Int(i), T::String) => Some(Ok(Owned::Text(i.to_string()))),
        (Value::Float(f), T::Auto | T::Number | T::String) if !f.is_finite() => {
            Some(Err(CellError::NotFinite))
        }
        (Value::Float(f), T::Auto | T::Number) => Some(Ok(Owned::Float(f.to_bits()))),
        (Value::Bool(b), T::Auto | T::Bool) => Some(Ok(Owned::Bool(b))),
        _ => None,
    };
    if let Some(expected) = expected {
        assert_eq!(got, &expected, "{value:?} in a {column_type:?} column");
    }
    match (column_type, got, value) {
        // An 18-digit id or a price given as a number stays exact text.
        (T::String, Ok(Owned::Text(text)), Value::Float(f)) => {
            let back: f64 = text.parse().expect("a float's text parses");
            assert_eq!(back.to_bits(), f.to_bits(), "{text} is not {f:?}");
            assert!(!text.contains(['e', 'E']), "{text} has an exponent");
        }
        (T::String, Ok(other), _) => {
            assert!(
                matches!(other, Owned::Text(_) | Owned::Null),
                "a string column stored {other:?}"
            );
        }
        (T::Date, Ok(Owned::Date(d)), _) => {
            assert!(
                d.nanos == 0 && d.seconds.rem_euclid(SECONDS_PER_DAY) == 0,
                "a date with a time: {d:?} from {value:?}"
            );
            if let Value::Int(unix) | Value::DateTime(LocalDateTime { seconds: unix, .. }) = value {
                let behind = i128::from(unix) - i128::from(d.seconds);
                assert!(
                    (0..i128::from(SECONDS_PER_DAY)).contains(&behind),
                    "{value:?} became the date {d:?}"
                );
            }
        }
        (T::Time, Ok(Owned::Time(t)), _) => {
            assert!(
                (0..SECONDS_PER_DAY).contains(&t.seconds),
                "a time beyond one day: {t:?}"
            );
        }
        (T::Date | T::Time, Ok(other), _) if *other != Owned::Null => {
            panic!("a {column_type:?} column stored {other:?}")
        }
        _ => {}
    }
}

/// `batch_arena`: values and cells of every type pushed into a
/// `RecordBatch`, with and without `replacing_invalid_utf8`; a rejected value
/// leaves the row as it was, and every accepted cell reads back as stored.
pub fn batch_arena(data: &[u8]) {
    let _ = run_batch_arena(&mut Unstructured::new(data));
}

fn run_batch_arena(u: &mut Unstructured<'_>) -> Arbitrary<()> {
    let columns = u.int_in_range(1..=6)?;
    let replace = u.arbitrary::<bool>()?;
    let mut batch = RecordBatch::new(columns, u.int_in_range(0..=256)?);
    if replace {
        batch = batch.replacing_invalid_utf8();
    }
    let mut expected = Vec::new();
    let mut rows = 0;
    while !u.is_empty() && rows < 64 {
        for _ in 0..columns {
            if u.ratio(1, 4)? {
                let c = cell(u)?;
                batch.push_cell(&c);
                expected.push(Owned::of(&c));
                continue;
            }
            let v = value(u)?;
            let column_type = *u.choose(&COLUMN_TYPES)?;
            let want = expected_push(v, column_type, replace);
            check_push_contract(v, column_type, replace, &want);
            let before = batch.byte_size();
            match (batch.push(v, column_type), want) {
                (Ok(()), Ok(cell)) => expected.push(cell),
                (Err(e), Err(w)) => {
                    assert_eq!(e, w, "{v:?} in a {column_type:?} column");
                    assert_eq!(batch.byte_size(), before, "a rejected value left bytes");
                    // The row must still be completed: a front end drops the
                    // whole batch, but the arena itself stays consistent.
                    batch.push_cell(&Cell::Null);
                    expected.push(Owned::Null);
                }
                (got, want) => {
                    panic!("{v:?} in a {column_type:?} column: {got:?}, expected {want:?}")
                }
            }
        }
        batch.end_row();
        rows += 1;
    }
    assert_eq!(batch.rows(), rows);
    assert_eq!(batch.columns(), columns);
    let mut reader = batch.reader();
    let mut row = Vec::new();
    let mut got = Vec::new();
    while reader.next_row(&mut row) {
        assert_eq!(row.len(), columns);
        got.extend(row.iter().map(Owned::of));
    }
    assert_eq!(got, expected);
    Ok(())
}

/// A cell the CSV target writes: what `addBatch` accepts, text and numbers.
#[derive(Debug)]
enum CsvCell {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(String),
}

impl CsvCell {
    fn arbitrary(u: &mut Unstructured<'_>) -> Arbitrary<Self> {
        Ok(match u.int_in_range(0..=5)? {
            0 => Self::Null,
            1 => Self::Bool(u.arbitrary()?),
            2 => Self::Int(u.arbitrary()?),
            3 => match f64::from_bits(u.arbitrary()?) {
                // NAN and INF never reach a writer: front ends reject them.
                f if f.is_finite() => Self::Float(f),
                _ => Self::Null,
            },
            _ => Self::Text(u.arbitrary()?),
        })
    }

    fn as_cell(&self) -> Cell<'_> {
        match self {
            Self::Null => Cell::Null,
            Self::Bool(b) => Cell::Bool(*b),
            Self::Int(i) => Cell::Int(*i),
            Self::Float(f) => Cell::Float(*f),
            Self::Text(t) => Cell::Text(t),
        }
    }
}

/// The documented guard: `=`, `@`, tab or CR first, or `+`/`-` first when
/// what follows is not a plain number (`12`, `12.5`).
fn looks_like_formula(text: &str) -> bool {
    let plain_number = |rest: &str| {
        let (whole, fraction) = rest.split_once('.').unwrap_or((rest, "0"));
        [whole, fraction]
            .iter()
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
    };
    match text.chars().next() {
        Some('=' | '@' | '\t' | '\r') => true,
        Some('+' | '-') => !plain_number(&text[1..]),
        _ => false,
    }
}

/// `excel_text`'s rule, stated on its own: at most 255 bytes on one line,
/// with a digit, or a boolean word.
fn would_convert(text: &str) -> bool {
    text.len() <= 255
        && !text.contains('\r')
        && !text.contains('\n')
        && (text.chars().any(|c| c.is_ascii_digit())
            || ["true", "false"]
                .iter()
                .any(|w| text.eq_ignore_ascii_case(w)))
}

/// Whether `encoding` can hold every character of `text`.
fn encodable(encoding: CsvEncoding, text: &str) -> bool {
    let gb = match encoding {
        CsvEncoding::Utf8 | CsvEncoding::Utf16Le => return true,
        CsvEncoding::Gbk => encoding_rs::GBK,
        CsvEncoding::Gb18030 => encoding_rs::GB18030,
    };
    let mut encoder = gb.new_encoder();
    let room = encoder
        .max_buffer_length_from_utf8_without_replacement(text.len())
        .expect("a short text");
    let mut out = Vec::with_capacity(room);
    let (result, _) = encoder.encode_from_utf8_to_vec_without_replacement(text, &mut out, true);
    // GB18030's additions to GBK's two-byte codes, which GBK readers lack.
    result == encoding_rs::EncoderResult::InputEmpty
        && !text.chars().any(|c| schema::gbk_readers_lack(gb, c))
}

/// The text as it reads back: with `unencodable => 'replace'`, each
/// character the encoding cannot hold is a `?`.
fn as_encoded(encoding: CsvEncoding, text: &str) -> String {
    text.chars()
        .map(|c| {
            if encodable(encoding, c.encode_utf8(&mut [0; 4])) {
                c
            } else {
                '?'
            }
        })
        .collect()
}

fn csv_options(u: &mut Unstructured<'_>) -> Arbitrary<Option<CsvOptions>> {
    // What `csv.delimiter`/`csv.enclosure` accept: one ASCII character other
    // than CR or LF, the two different.
    let delimiter = u.int_in_range(0..=127u8)?;
    let enclosure = u.int_in_range(0..=127u8)?;
    if delimiter == enclosure || [delimiter, enclosure].iter().any(|b| b"\r\n".contains(b)) {
        return Ok(None);
    }
    Ok(Some(CsvOptions {
        encoding: *u.choose(&[
            CsvEncoding::Utf8,
            CsvEncoding::Gbk,
            CsvEncoding::Gb18030,
            CsvEncoding::Utf16Le,
        ])?,
        replace_unencodable: u.arbitrary()?,
        formula_guard: u.arbitrary()?,
        excel_text: u.arbitrary()?,
        delimiter,
        enclosure,
        bom: u.arbitrary()?,
        header: u.arbitrary()?,
        crlf: u.arbitrary()?,
        null_text: u.arbitrary()?,
        style: TextStyle {
            true_text: u.arbitrary()?,
            false_text: u.arbitrary()?,
            ..TextStyle::default()
        },
        gzip: u.ratio(1, 8)?,
    }))
}

/// `csv_cells`: text and number cells under arbitrary CSV options, written
/// by the CSV writer and parsed back with the `csv` crate. Every field reads
/// back exactly: the formula guard's `'` where documented; a text cell or
/// header with a character the encoding cannot hold is an error naming it,
/// or a `?` with `unencodable => 'replace'`; floats as their shortest
/// round-trip digits, never an exponent.
pub fn csv_cells(data: &[u8]) {
    let _ = run_csv_cells(&mut Unstructured::new(data));
}

fn run_csv_cells(u: &mut Unstructured<'_>) -> Arbitrary<()> {
    let Some(options) = csv_options(u)? else {
        return Ok(());
    };
    let names: Vec<String> = (0..u.int_in_range(1..=5)?)
        .map(|_| u.arbitrary())
        .collect::<Arbitrary<_>>()?;
    // `string` columns are where `excel_text` applies; cells are pushed as
    // they are, so the type changes nothing else here.
    let columns: Vec<Column> = names
        .iter()
        .map(|n| {
            let string = u.arbitrary::<bool>()?;
            let column_type = if string {
                ColumnType::String
            } else {
                ColumnType::Auto
            };
            Ok(Column::new(n.clone(), column_type))
        })
        .collect::<Arbitrary<_>>()?;
    // Rows, and where a batch ends: the writer keeps state across batches.
    let mut rows: Vec<(Vec<CsvCell>, bool)> = Vec::new();
    while !u.is_empty() && rows.len() < 32 {
        let row = (0..columns.len())
            .map(|_| CsvCell::arbitrary(u))
            .collect::<Arbitrary<_>>()?;
        rows.push((row, u.ratio(1, 4)?));
    }

    let strict = !options.replace_unencodable;
    let dir = scratch_dir();
    let path = dir.path().join("fuzz.csv");
    let mut out = writer::open(Format::Csv, &path, &options, &XlsxOptions::default())
        .expect("the CSV writer opens");
    let header_rejected =
        options.header && strict && names.iter().any(|n| !encodable(options.encoding, n));
    match out.begin_sheet("Sheet1", &columns) {
        Ok(()) => assert!(
            !header_rejected,
            "{options:?} accepted the header {names:?}"
        ),
        Err(e) => {
            assert!(header_rejected, "header {names:?}: {e}");
            assert!(e.message.contains("header \""), "{e}");
            return Ok(());
        }
    }
    let mut batch = RecordBatch::new(columns.len(), 0);
    let mut data_row = 0;
    let last = rows.len().saturating_sub(1);
    for (i, (row, ends_batch)) in rows.iter().enumerate() {
        row.iter().for_each(|c| batch.push_cell(&c.as_cell()));
        batch.end_row();
        if !(*ends_batch || i == last) {
            continue;
        }
        let first_bad = strict
            .then(|| first_unencodable(&rows[data_row..=i], options.encoding))
            .flatten()
            .map(|(r, c)| (data_row + r, c));
        match (out.write_batch(&batch), first_bad) {
            (Ok(()), None) => {}
            (Err(e), Some((r, c))) => {
                let at = format!("data row {}, column {}: character", r + 1, c + 1);
                assert!(e.message.contains(&at), "expected \"{at}\" in: {e}");
                return Ok(());
            }
            (got, want) => panic!("batch ending at row {i}: {got:?}, first unencodable {want:?}"),
        }
        data_row = i + 1;
        batch = RecordBatch::new(columns.len(), 0);
    }
    let written = out.finish().expect("the CSV file completes");
    let bytes = std::fs::read(&path).expect("the CSV file reads");
    check_written(&written, &bytes);

    let guarded = |t: &str| {
        if options.formula_guard && looks_like_formula(t) {
            format!("'{t}")
        } else {
            t.to_owned()
        }
    };
    let mut expected: Vec<Vec<String>> = Vec::new();
    if options.header {
        // A header is guarded as a text cell is.
        expected.push(names.iter().map(|n| guarded(n)).collect());
    }
    for (row, _) in &rows {
        expected.push(
            row.iter()
                .zip(&columns)
                .map(|(c, column)| match c {
                    CsvCell::Null => options.null_text.clone(),
                    CsvCell::Bool(true) => options.style.true_text.clone(),
                    CsvCell::Bool(false) => options.style.false_text.clone(),
                    CsvCell::Int(i) => i.to_string(),
                    // Checked below by value: the digits are the writer's choice.
                    CsvCell::Float(_) => String::new(),
                    CsvCell::Text(t)
                        if options.excel_text
                            && column.column_type == ColumnType::String
                            && would_convert(t) =>
                    {
                        format!("=\"{}\"", t.replace('"', "\"\""))
                    }
                    CsvCell::Text(t) => guarded(t),
                })
                .collect(),
        );
    }
    let expected: Vec<Vec<String>> = expected
        .iter()
        .map(|r| r.iter().map(|f| as_encoded(options.encoding, f)).collect())
        .collect();

    let text = decode_csv(&options, &bytes);
    let mut got: Vec<Vec<String>> = csv::ReaderBuilder::new()
        .has_headers(false)
        .delimiter(options.delimiter)
        .quote(options.enclosure)
        .from_reader(text.as_bytes())
        .records()
        .map(|r| {
            r.unwrap_or_else(|e| panic!("unreadable CSV {text:?}: {e}"))
                .iter()
                .map(str::to_owned)
                .collect()
        })
        .collect();
    let data_start = usize::from(options.header);
    for (r, (row, _)) in rows.iter().enumerate() {
        for (c, cell) in row.iter().enumerate() {
            if let CsvCell::Float(f) = cell {
                let field = got
                    .get_mut(r + data_start)
                    .and_then(|g| g.get_mut(c))
                    .map(std::mem::take)
                    .unwrap_or_else(|| panic!("no field for {f:?} in {text:?}"));
                assert!(!field.contains(['e', 'E']), "{f:?} written as {field}");
                let back: f64 = field.parse().expect("a float's field parses");
                assert_eq!(back.to_bits(), f.to_bits(), "{f:?} written as {field}");
            }
        }
    }
    assert_eq!(got, expected, "options {options:?}, file {text:?}");
    Ok(())
}

/// The first text cell (row, column; 0-based) of `rows` with a character
/// `encoding` cannot hold.
fn first_unencodable(
    rows: &[(Vec<CsvCell>, bool)],
    encoding: CsvEncoding,
) -> Option<(usize, usize)> {
    rows.iter().enumerate().find_map(|(r, (row, _))| {
        row.iter().enumerate().find_map(|(c, cell)| match cell {
            CsvCell::Text(t) if !encodable(encoding, t) => Some((r, c)),
            _ => None,
        })
    })
}

/// The size and SHA-256 the writer reports are those of the file.
fn check_written(written: &WrittenFile, bytes: &[u8]) {
    use sha2::Digest;
    assert_eq!(written.bytes, bytes.len() as u64);
    assert_eq!(written.sha256, hex::encode(sha2::Sha256::digest(bytes)));
    assert_eq!(written.sheets, 1);
}

/// The CSV text of a written file: unzipped, its BOM checked and removed,
/// decoded from its encoding, all without loss.
fn decode_csv(options: &CsvOptions, file: &[u8]) -> String {
    use std::io::Read;
    let mut bytes = file.to_vec();
    if options.gzip {
        bytes.clear();
        flate2::read::GzDecoder::new(file)
            .read_to_end(&mut bytes)
            .expect("the .csv.gz decompresses");
    }
    let bom: &[u8] = match (options.bom, options.encoding) {
        (false, _) | (true, CsvEncoding::Gbk | CsvEncoding::Gb18030) => b"",
        (true, CsvEncoding::Utf8) => b"\xEF\xBB\xBF",
        (true, CsvEncoding::Utf16Le) => b"\xFF\xFE",
    };
    let body = bytes
        .strip_prefix(bom)
        .unwrap_or_else(|| panic!("no BOM {bom:?} in {bytes:?}"));
    let decoder = match options.encoding {
        CsvEncoding::Utf8 => encoding_rs::UTF_8,
        CsvEncoding::Gbk => encoding_rs::GBK,
        CsvEncoding::Gb18030 => encoding_rs::GB18030,
        CsvEncoding::Utf16Le => encoding_rs::UTF_16LE,
    };
    decoder
        .decode_without_bom_handling_and_without_replacement(body)
        .unwrap_or_else(|| panic!("not {decoder:?}: {body:?}"))
        .into_owned()
}

/// `xlsx_cells`: text cells and header names of any valid UTF-8 written
/// through the public XLSX writer and read back with calamine. Every text
/// reads back exactly. calamine decodes OOXML's `_xHHHH_` escapes for
/// U+0000–U+00FF (so `_x005F_` is `_`), as Excel does: a writer must escape
/// control characters that way and text that looks like an escape with
/// `_x005F_`, or the reader sees something else. An empty text reads back as
/// an empty cell.
pub fn xlsx_cells(data: &[u8]) {
    let _ = run_xlsx_cells(&mut Unstructured::new(data));
}

/// Any text but U+FFFE and U+FFFF, which are not XML characters: the writer
/// escapes them as `_xFFFE_` and `_xFFFF_`, which Excel decodes but calamine
/// does not (it decodes `_x00HH_` only), so they cannot round-trip through
/// this reader. The writer's own unit tests cover them.
fn xml_text(u: &mut Unstructured<'_>) -> Arbitrary<String> {
    Ok(u.arbitrary::<String>()?
        .replace(['\u{FFFE}', '\u{FFFF}'], "\u{FFFD}"))
}

fn run_xlsx_cells(u: &mut Unstructured<'_>) -> Arbitrary<()> {
    use calamine::{Data, Reader};
    let mut columns = Vec::new();
    for _ in 0..u.int_in_range(1..=4)? {
        let mut column = Column::new(xml_text(u)?, ColumnType::String);
        if u.ratio(1, 4)? {
            column.width = Some(schema::ColumnWidth::Auto);
        }
        columns.push(column);
    }
    let mut rows: Vec<Vec<String>> = Vec::new();
    while !u.is_empty() && rows.len() < 16 {
        rows.push(
            (0..columns.len())
                .map(|_| xml_text(u))
                .collect::<Arbitrary<_>>()?,
        );
    }
    let options = XlsxOptions {
        compression_level: 1,
        autofilter: u.arbitrary()?,
        ..XlsxOptions::default()
    };
    let too_long = |t: &String| t.chars().count() > 32_767;
    let any_too_long =
        columns.iter().any(|c| too_long(&c.name)) || rows.iter().flatten().any(too_long);

    let dir = scratch_dir();
    let path = dir.path().join("fuzz.xlsx");
    let written = write_xlsx(&path, &options, &columns, &rows);
    let written = match written {
        Ok(w) => w,
        Err(e) => {
            assert!(any_too_long, "XLSX writer failed: {e}");
            return Ok(());
        }
    };
    assert!(
        !any_too_long,
        "a text over Excel's 32,767 characters was written"
    );
    let bytes = std::fs::read(&path).expect("the XLSX file reads");
    check_written(&written, &bytes);

    let mut book: calamine::Xlsx<_> =
        calamine::open_workbook(&path).unwrap_or_else(|e| panic!("calamine cannot open: {e}"));
    let range = book
        .worksheet_range("Fuzz")
        .unwrap_or_else(|e| panic!("calamine cannot read the sheet: {e}"));
    let header: Vec<String> = columns.iter().map(|c| c.name.clone()).collect();
    for (r, row) in std::iter::once(&header).chain(&rows).enumerate() {
        for (c, text) in row.iter().enumerate() {
            match range.get_value((r as u32, c as u32)) {
                Some(Data::String(got)) => assert!(
                    *got == *text,
                    "row {r}, column {c}: {text:?} read back as {got:?}"
                ),
                None | Some(Data::Empty) => {
                    assert!(text.is_empty(), "row {r}, column {c}: {text:?} is missing")
                }
                Some(other) => panic!("row {r}, column {c}: {text:?} read back as {other:?}"),
            }
        }
    }
    Ok(())
}

/// A fresh directory on tmpfs where there is one: the writers fsync the
/// finished file, which on a disk would bound the fuzzer to a few hundred
/// runs a second.
fn scratch_dir() -> tempfile::TempDir {
    let shm = std::path::Path::new("/dev/shm");
    let parent = if shm.is_dir() {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    };
    tempfile::tempdir_in(parent).expect("a temp dir")
}

fn write_xlsx(
    path: &std::path::Path,
    options: &XlsxOptions,
    columns: &[Column],
    rows: &[Vec<String>],
) -> fluxo::error::Result<WrittenFile> {
    let mut out = writer::open(Format::Xlsx, path, &CsvOptions::default(), options)?;
    out.begin_sheet("Fuzz", columns)?;
    let mut batch = RecordBatch::new(columns.len(), 0);
    for row in rows {
        row.iter().for_each(|t| batch.push_cell(&Cell::Text(t)));
        batch.end_row();
    }
    out.write_batch(&batch)?;
    out.finish()
}

/// `grpc_batch`: the input is a stream of length-delimited `ExportRequest`s
/// (a varint length, then the message), run through the conversions the
/// gRPC service applies: metadata to an export spec, `SheetStart` columns,
/// `DataBatch`es to record batches. Bad messages are errors, never panics;
/// an accepted batch holds each value as the column type says.
#[cfg(feature = "server")]
pub fn grpc_batch(data: &[u8]) {
    use fluxo::config::Settings;
    use fluxo::error::ErrorKind;
    use fluxo::grpc::convert;
    use fluxo::grpc::pb::{export_request::Payload, ExportRequest};
    use prost::Message;

    // The built-in defaults only: the environment of a test run may name stores.
    static SETTINGS: std::sync::OnceLock<Settings> = std::sync::OnceLock::new();
    let settings = SETTINGS.get_or_init(|| {
        Settings::resolve_with_env(|_| None, |_| None).expect("the defaults are valid")
    });
    let mut input = data;
    let mut columns: Option<(Vec<ColumnType>, Vec<String>)> = None;
    while !input.is_empty() {
        let Ok(request) = ExportRequest::decode_length_delimited(&mut input) else {
            return;
        };
        match request.payload {
            Some(Payload::Metadata(m)) => {
                if let Ok(spec) = convert::spec(&m, settings) {
                    assert!(!spec.columns.is_empty(), "a spec without columns");
                    columns = Some((
                        spec.columns.iter().map(|c| c.column_type).collect(),
                        spec.columns.iter().map(|c| c.name.clone()).collect(),
                    ));
                }
            }
            Some(Payload::Sheet(sheet)) => {
                let _ = fluxo::writer::xlsx::validate_sheet_name(&sheet.name);
                if let Ok(Some(new)) = convert::sheet_columns(&sheet.columns) {
                    columns = Some((
                        new.iter().map(|c| c.column_type).collect(),
                        new.iter().map(|c| c.name.clone()).collect(),
                    ));
                }
            }
            Some(Payload::Batch(b)) => {
                let Some((types, names)) = &columns else {
                    continue;
                };
                match convert::batch(&b, types, names, RecordBatch::new(types.len(), 0)) {
                    Ok(batch) => check_grpc_batch(&b.records, types, &batch),
                    Err(e) => {
                        assert_eq!(e.kind, ErrorKind::InvalidRow, "{e}");
                        let at = format!("batch_sequence {}, record ", b.batch_sequence);
                        assert!(e.message.contains(&at), "{e}");
                    }
                }
            }
            None => {}
        }
    }
}

/// Every value of an accepted gRPC batch, cell by cell: `STRING` exactly as
/// sent, an empty value null in other columns, numbers finite.
#[cfg(feature = "server")]
fn check_grpc_batch(
    records: &[fluxo::grpc::pb::Record],
    types: &[ColumnType],
    batch: &RecordBatch,
) {
    assert_eq!(batch.rows(), records.len());
    let mut reader = batch.reader();
    let mut row = Vec::new();
    for record in records {
        assert!(reader.next_row(&mut row));
        for ((value, column_type), cell) in record.values.iter().zip(types).zip(&row) {
            match (column_type, cell) {
                (ColumnType::String, Cell::Text(t)) => assert_eq!(t, value),
                (ColumnType::String, other) => panic!("{value:?} became {other:?}"),
                (_, Cell::Null) => assert!(value.is_empty(), "{value:?} became null"),
                (ColumnType::Number, Cell::Float(f)) => assert!(f.is_finite(), "{value:?}"),
                // Whole numbers past a double's 15 digits stay exact.
                (ColumnType::Number, Cell::Int(i)) => {
                    assert_eq!(value.trim().parse::<i64>(), Ok(*i), "{value:?}")
                }
                (ColumnType::Number, Cell::Text(t)) => {
                    assert!(
                        t.trim_start_matches(['-', '+'])
                            .bytes()
                            .all(|b| b.is_ascii_digit()),
                        "{value:?} became {t:?}"
                    )
                }
                (ColumnType::Bool, Cell::Bool(_)) => {}
                // DATA_TYPE_DATE: a bare Y-m-d is a day, anything with a time a datetime.
                (ColumnType::DateOrDateTime, Cell::Date(_)) => {
                    assert_eq!(
                        value.trim().len(),
                        "2026-11-29".len(),
                        "{value:?} became a day"
                    )
                }
                (ColumnType::DateOrDateTime, Cell::DateTime(_)) => {
                    assert!(
                        value.trim().len() > "2026-11-29".len(),
                        "{value:?} lost its time"
                    )
                }
                (t, other) => panic!("{value:?} in a {t:?} column became {other:?}"),
            }
        }
    }
    assert!(!reader.next_row(&mut row), "more rows than records");
}
