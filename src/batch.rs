//! [`RecordBatch`]: rows packed into one contiguous arena, moved between
//! threads and never copied again.
//!
//! A cell is a tag byte followed by its payload (8 bytes for numbers, a
//! length and the bytes for text, 12 bytes for dates). Appending a cell never
//! allocates beyond the arena's own amortised growth, and reading one borrows
//! from the arena.

use crate::schema::{self, Cell, CellError, ColumnType, LocalDateTime, TextLimit, Value};

const NULL: u8 = 0;
const TRUE: u8 = 1;
const FALSE: u8 = 2;
const INT: u8 = 3;
const FLOAT: u8 = 4;
const TEXT: u8 = 5;
const DATE: u8 = 6;
const DATETIME: u8 = 7;
const TIME: u8 = 8;

/// Rows of cells in one arena. Every row has `columns` cells.
#[derive(Debug, Default, Clone)]
pub struct RecordBatch {
    data: Vec<u8>,
    columns: usize,
    rows: usize,
    cells_in_row: usize,
    /// Invalid UTF-8 becomes U+FFFD instead of an error.
    replace_invalid_utf8: bool,
    /// What each text cell is checked against as it is added.
    text_limit: Option<TextLimit>,
}

impl RecordBatch {
    /// An empty batch for rows of `columns` cells; `capacity` is a byte hint.
    pub fn new(columns: usize, capacity: usize) -> Self {
        Self::new_in(Vec::new(), columns, capacity)
    }

    /// [`RecordBatch::new`] in the memory of an arena no longer needed
    /// ([`RecordBatch::into_arena`]).
    pub fn new_in(mut arena: Vec<u8>, columns: usize, capacity: usize) -> Self {
        arena.clear();
        arena.reserve(capacity);
        Self {
            data: arena,
            columns,
            rows: 0,
            cells_in_row: 0,
            replace_invalid_utf8: false,
            text_limit: None,
        }
    }

    /// Invalid UTF-8 in text is replaced by U+FFFD instead of rejected.
    pub fn replacing_invalid_utf8(mut self) -> Self {
        self.replace_invalid_utf8 = true;
        self
    }

    /// Text cells past `limit` are refused as they are added, so that the
    /// batch is rejected before the writer would fail the export on them.
    pub fn with_text_limit(mut self, limit: Option<TextLimit>) -> Self {
        self.text_limit = limit;
        self
    }

    /// The limit each text cell was checked against as it was added.
    pub fn text_limit(&self) -> Option<TextLimit> {
        self.text_limit
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn columns(&self) -> usize {
        self.columns
    }

    /// Bytes held: what the queues between threads count.
    pub fn byte_size(&self) -> usize {
        self.data.len()
    }

    /// Converts `value` by the column's type and appends it to the current row.
    /// Always inlined: where the caller knows the kind of `value` (the PHP
    /// front end does, per cell), the conversion folds down to that kind's
    /// own few instructions.
    #[inline(always)]
    pub fn push(&mut self, value: Value<'_>, column_type: ColumnType) -> Result<(), CellError> {
        if self.push_as_is(value, column_type) {
            return Ok(());
        }
        self.push_converted(value, column_type)
    }

    #[inline(always)]
    fn push_converted(
        &mut self,
        value: Value<'_>,
        column_type: ColumnType,
    ) -> Result<(), CellError> {
        let cell = match (schema::convert(value, column_type), value) {
            (Err(CellError::InvalidUtf8 { .. }), Value::Bytes(bytes))
                if self.replace_invalid_utf8 =>
            {
                return self.push_repaired(bytes, column_type);
            }
            (result, _) => result?,
        };
        if let (Cell::Text(text), Some(limit)) = (&cell, self.text_limit) {
            limit.check(text)?;
        }
        if column_type == ColumnType::String && !matches!(cell, Cell::Text(_) | Cell::Null) {
            self.push_text_form(&cell);
        } else {
            self.push_cell(&cell);
        }
        Ok(())
    }

    /// Appends the values most cells are, kept as they come (an int to an
    /// int column, valid text to a string column...), as their cell at once,
    /// without [`schema::convert`]'s `Result` and the checks after it: an
    /// eighth of `addBatch`'s instructions (callgrind, BENCHMARKS.md). False
    /// for any other pair, which `convert` converts. What it appends is what
    /// converting appends (`values_kept_as_they_come_are_appended_as_converted`).
    #[inline(always)]
    fn push_as_is(&mut self, value: Value<'_>, column_type: ColumnType) -> bool {
        use ColumnType as T;
        let cell = match (value, column_type) {
            (Value::Null, _) => Cell::Null,
            (Value::Int(i), T::Auto | T::Int | T::Number) => Cell::Int(i),
            (Value::Float(f), T::Auto | T::Number) if f.is_finite() => Cell::Float(f),
            (Value::Bool(b), T::Auto | T::Bool) => Cell::Bool(b),
            (Value::Bytes(bytes), T::Auto | T::String) if self.text_limit.is_none() => {
                match schema::text(bytes) {
                    Ok(text) => Cell::Text(text),
                    Err(_) => return false,
                }
            }
            (Value::Bytes(bytes), T::Date | T::DateTime | T::DateOrDateTime) => {
                let Some((midnight, time)) = schema::parse_sql_datetime(bytes) else {
                    return false;
                };
                match (column_type, time) {
                    (T::Date, _) | (T::DateOrDateTime, None) => Cell::Date(midnight),
                    (_, time) => Cell::DateTime(LocalDateTime {
                        seconds: midnight.seconds + time.unwrap_or(0),
                        nanos: 0,
                    }),
                }
            }
            _ => return false,
        };
        self.push_cell(&cell);
        true
    }

    /// [`RecordBatch::push`] of the `len` bytes of text at `text`, which
    /// bytes that may be read precede in memory (a PHP string's header
    /// precedes its text). A text of at most 16 bytes kept as it comes is
    /// then read as the 16-byte word that ends where it ends, shifted down,
    /// and copied and checked for ASCII without a branch on its length: the
    /// branches on the length in copying and checking it mispredicted on a
    /// column of texts of mixed lengths, such as city names (BENCHMARKS.md,
    /// thirteenth round). Where `push` would grow the arena, `push` does.
    ///
    /// # Safety
    ///
    /// `text` points to `len` initialised bytes, and the 16 bytes that end
    /// at `text + len` are initialised, readable and part of the same
    /// allocation as the text: for an empty text as well.
    #[inline(always)]
    // Only the PHP front end calls it: unused in a build without it.
    #[cfg_attr(not(feature = "php"), allow(dead_code))]
    pub(crate) unsafe fn push_text_with_headroom(
        &mut self,
        text: *const u8,
        len: usize,
        column_type: ColumnType,
    ) -> Result<(), CellError> {
        const WORD: usize = 16;
        // SAFETY: the caller's promise: `len` bytes at `text`.
        let bytes = unsafe { std::slice::from_raw_parts(text, len) };
        let plain = matches!(column_type, ColumnType::Auto | ColumnType::String)
            && self.text_limit.is_none();
        let room = self.data.capacity() - self.data.len();
        if !plain || len > WORD || room < 5 + WORD {
            return self.push(Value::Bytes(bytes), column_type);
        }
        // SAFETY: the caller's promise: the word ending at `text + len` may
        // be read. The bytes before the text in it are shifted out.
        let word = unsafe {
            text.add(len)
                .sub(WORD)
                .cast::<[u8; WORD]>()
                .read_unaligned()
        };
        let shifted = u128::from_le_bytes(word)
            .checked_shr(8 * (WORD - len) as u32)
            .unwrap_or(0);
        const HIGH_BITS: u128 = u128::MAX / 0xff * 0x80;
        if shifted & HIGH_BITS != 0 && std::str::from_utf8(bytes).is_err() {
            return self.push(Value::Bytes(bytes), column_type);
        }
        let at = self.data.len();
        // SAFETY: there is room for the tag, the length and a whole word
        // after `at` (`room`); `set_len` counts the text's `len` bytes of
        // that word only, all written. The text is UTF-8 (ASCII, or checked
        // above), as `BatchReader::next_cell` requires of TEXT cells.
        unsafe {
            let cell = self.data.as_mut_ptr().add(at);
            cell.write(TEXT);
            cell.add(1)
                .cast::<[u8; 4]>()
                .write_unaligned(text_len(len).to_le_bytes());
            cell.add(5)
                .cast::<[u8; WORD]>()
                .write_unaligned(shifted.to_le_bytes());
            self.data.set_len(at + 5 + len);
        }
        self.cells_in_row += 1;
        Ok(())
    }

    #[cold]
    fn push_repaired(&mut self, bytes: &[u8], column_type: ColumnType) -> Result<(), CellError> {
        let repaired = String::from_utf8_lossy(bytes);
        self.push(Value::Bytes(repaired.as_bytes()), column_type)
    }

    /// Appends an already converted cell to the current row.
    #[inline(always)]
    pub fn push_cell(&mut self, cell: &Cell<'_>) {
        match *cell {
            Cell::Null => self.data.push(NULL),
            Cell::Bool(b) => self.data.push(if b { TRUE } else { FALSE }),
            Cell::Int(i) => self.push_tagged(INT, i.to_le_bytes()),
            Cell::Float(f) => self.push_tagged(FLOAT, f.to_le_bytes()),
            Cell::Text(t) => {
                self.push_tagged(TEXT, text_len(t.len()).to_le_bytes());
                schema::extend_short(&mut self.data, t.as_bytes());
            }
            Cell::Date(dt) => self.push_datetime(DATE, dt),
            Cell::DateTime(dt) => self.push_datetime(DATETIME, dt),
            Cell::Time(dt) => self.push_datetime(TIME, dt),
        }
        self.cells_in_row += 1;
    }

    // The text goes straight into the arena: write it after a length
    // placeholder, then patch the length in.
    fn push_text_form(&mut self, cell: &Cell<'_>) {
        self.data.push(TEXT);
        let len_at = self.data.len();
        self.data.extend_from_slice(&[0; 4]);
        schema::write_text_form(cell, string_column_style(), &mut self.data);
        let len = text_len(self.data.len() - len_at - 4);
        self.data[len_at..len_at + 4].copy_from_slice(&len.to_le_bytes());
        self.cells_in_row += 1;
    }

    #[inline(always)]
    fn push_datetime(&mut self, tag: u8, dt: LocalDateTime) {
        let mut payload = [0; 12];
        payload[..8].copy_from_slice(&dt.seconds.to_le_bytes());
        payload[8..].copy_from_slice(&dt.nanos.to_le_bytes());
        self.push_tagged(tag, payload);
    }

    /// A tag and its fixed-size payload in one append: one check for room
    /// where a push and an extend made two (per cell, on the PHP thread).
    #[inline(always)]
    fn push_tagged<const N: usize>(&mut self, tag: u8, payload: [u8; N]) {
        const { assert!(N <= 12, "no cell payload is longer than a date's") };
        let mut cell = [tag; 13];
        cell[1..=N].copy_from_slice(&payload);
        self.data.extend_from_slice(&cell[..=N]);
    }

    /// Closes the current row. Panics if it does not have `columns` cells:
    /// front ends check the count before they append a row.
    pub fn end_row(&mut self) {
        assert_eq!(
            self.cells_in_row, self.columns,
            "row has the wrong number of cells"
        );
        self.cells_in_row = 0;
        self.rows += 1;
    }

    /// Appends the rows of `other`, a batch of the same columns.
    pub fn append(&mut self, other: &RecordBatch) {
        assert_eq!(self.columns, other.columns, "batches of different columns");
        assert_eq!(other.cells_in_row, 0, "a row is half written");
        self.data.extend_from_slice(&other.data);
        self.rows += other.rows;
    }

    /// The arena, for another batch to fill ([`RecordBatch::new_in`]).
    pub fn into_arena(self) -> Vec<u8> {
        self.data
    }

    /// Reads the rows back in order.
    pub fn reader(&self) -> BatchReader<'_> {
        BatchReader {
            data: &self.data,
            pos: 0,
            columns: self.columns,
        }
    }
}

fn string_column_style() -> &'static schema::TextStyle {
    static STYLE: std::sync::OnceLock<schema::TextStyle> = std::sync::OnceLock::new();
    STYLE.get_or_init(schema::TextStyle::for_string_columns)
}

/// Texts are limited to 4 GiB each by the length prefix; a cell that large is
/// rejected long before by the writers' own limits.
fn text_len(len: usize) -> u32 {
    u32::try_from(len).expect("a cell text longer than 4 GiB")
}

/// Sequential reader over a batch's rows.
pub struct BatchReader<'a> {
    data: &'a [u8],
    pos: usize,
    columns: usize,
}

impl<'a> BatchReader<'a> {
    /// Decodes the next row into `row` (cleared first). Returns false at the end.
    pub fn next_row(&mut self, row: &mut Vec<Cell<'a>>) -> bool {
        row.clear();
        if self.pos >= self.data.len() {
            return false;
        }
        for _ in 0..self.columns {
            let cell = self.next_cell();
            row.push(cell);
        }
        true
    }

    fn take<const N: usize>(&mut self) -> [u8; N] {
        let bytes = self.data[self.pos..self.pos + N]
            .try_into()
            .expect("N bytes");
        self.pos += N;
        bytes
    }

    /// Whether every row has been read.
    pub fn is_done(&self) -> bool {
        self.pos >= self.data.len()
    }

    /// Decodes the next cell, row after row: a row is `columns` cells. Only
    /// call it while `!is_done()`. Always inlined: as a call, the cell came
    /// back through memory, and reading it there stalled the CSV writer's
    /// loop (a fifth of its own time).
    #[inline(always)]
    pub fn next_cell(&mut self) -> Cell<'a> {
        let [tag] = self.take::<1>();
        match tag {
            NULL => Cell::Null,
            TRUE => Cell::Bool(true),
            FALSE => Cell::Bool(false),
            INT => Cell::Int(i64::from_le_bytes(self.take())),
            FLOAT => Cell::Float(f64::from_le_bytes(self.take())),
            TEXT => {
                let len = u32::from_le_bytes(self.take()) as usize;
                let bytes = &self.data[self.pos..self.pos + len];
                self.pos += len;
                // SAFETY: `data` is private to this module, and TEXT cells
                // are only written by `push_cell` (from a `&str`),
                // `push_text_with_headroom` (text checked first) and
                // `push_text_form` (ASCII digits, or text validated before it
                // became a cell), so these bytes are UTF-8. Checking them
                // again cost the writer thread a tenth of its time.
                Cell::Text(unsafe { std::str::from_utf8_unchecked(bytes) })
            }
            DATE | DATETIME | TIME => {
                let dt = LocalDateTime {
                    seconds: i64::from_le_bytes(self.take()),
                    nanos: u32::from_le_bytes(self.take()),
                };
                match tag {
                    DATE => Cell::Date(dt),
                    TIME => Cell::Time(dt),
                    _ => Cell::DateTime(dt),
                }
            }
            other => unreachable!("unknown cell tag {other} in a batch arena"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EVERY_TYPE: [ColumnType; 9] = [
        ColumnType::Auto,
        ColumnType::String,
        ColumnType::Int,
        ColumnType::Number,
        ColumnType::Bool,
        ColumnType::Date,
        ColumnType::DateTime,
        ColumnType::Time,
        ColumnType::DateOrDateTime,
    ];

    #[test]
    fn text_past_the_batch_limit_is_refused_as_it_is_added() {
        let text = |batch: &mut RecordBatch, t: &str| {
            batch.push(Value::Bytes(t.as_bytes()), ColumnType::Auto)
        };
        let mut chars = RecordBatch::new(1, 0).with_text_limit(Some(TextLimit::Chars(5)));
        assert_eq!(text(&mut chars, "ab€de"), Ok(()), "5 characters in 7 bytes");
        assert_eq!(
            text(&mut chars, "ab😀d"),
            Ok(()),
            "an emoji is two UTF-16 units: 5 in all"
        );
        assert_eq!(
            text(&mut chars, "ab😀de"),
            Err(CellError::TooManyChars { chars: 6, max: 5 })
        );
        assert_eq!(
            text(&mut chars, "abcdef"),
            Err(CellError::TooManyChars { chars: 6, max: 5 })
        );
        let mut gbk =
            RecordBatch::new(1, 0).with_text_limit(Some(TextLimit::Encoding(encoding_rs::GBK)));
        assert_eq!(text(&mut gbk, "张伟 ok"), Ok(()));
        let refused = text(&mut gbk, "ok 😀").unwrap_err();
        assert_eq!(
            refused.to_string(),
            "character '😀' (U+1F600) cannot be written in GBK; use encoding GB18030 or UTF-8, \
             or csv option unencodable => 'replace'"
        );
        let mut gb18030 =
            RecordBatch::new(1, 0).with_text_limit(Some(TextLimit::Encoding(encoding_rs::GB18030)));
        assert_eq!(text(&mut gb18030, "ok 😀"), Ok(()));
        assert!(text(&mut gb18030, "\u{E5E5}")
            .unwrap_err()
            .to_string()
            .contains("in GB18030; use encoding UTF-8"));
        // Text forms of other cells are not checked: they are ASCII.
        assert_eq!(gbk.push(Value::Int(7), ColumnType::String), Ok(()));
        let mut unlimited = RecordBatch::new(1, 0);
        assert_eq!(text(&mut unlimited, &"😀".repeat(40_000)), Ok(()));
    }

    #[test]
    fn values_kept_as_they_come_are_appended_as_converted() {
        let dt = LocalDateTime {
            seconds: 86_400,
            nanos: 5,
        };
        let values = [
            Value::Null,
            Value::Int(-7),
            Value::Float(1.5),
            Value::Float(f64::NAN),
            Value::Bool(true),
            Value::Bool(false),
            Value::Bytes(b"abc"),
            Value::Bytes("成都".as_bytes()),
            Value::Bytes(b"\xff"),
            Value::Bytes(b"2026-01-02"),
            Value::Bytes(b"2024-02-29 23:59:59"),
            Value::Bytes(b"0000-01-01T00:00:00"),
            Value::Bytes(b"9999-12-31"),
            Value::Bytes(b"2023-02-29"),
            Value::Bytes(b"2026-13-01"),
            Value::Bytes(b"2026-00-10"),
            Value::Bytes(b"2026-01-00"),
            Value::Bytes(b"2026-01-32"),
            Value::Bytes(b"2026-01-02 24:00:00"),
            Value::Bytes(b"2026-01-02 10:60:00"),
            Value::Bytes(b"2026-01-02 10:00:60"),
            Value::Bytes(b"2026-01-02x10:00:00"),
            Value::Bytes(b"2026/01/02"),
            Value::Bytes(b"2026-1-02 "),
            Value::Bytes(b" 2026-01-02"),
            Value::Bytes(b"20\xc326-01-0"),
            Value::Bytes(b"2026-01-02 10:00"),
            Value::Bytes(b"10:00:00"),
            Value::DateTime(dt),
        ];
        let mut kept = 0;
        for limit in [None, Some(TextLimit::Chars(2))] {
            for value in values {
                for ty in EVERY_TYPE {
                    let mut as_is = RecordBatch::new(1, 0).with_text_limit(limit);
                    let mut converted = as_is.clone();
                    if as_is.push_as_is(value, ty) {
                        kept += 1;
                        assert_eq!(converted.push_converted(value, ty), Ok(()));
                        assert_eq!(as_is.data, converted.data, "{value:?} in {ty:?}");
                        assert_eq!(as_is.cells_in_row, converted.cells_in_row);
                    }
                }
            }
        }
        // With either limit: null in every column, an int in three, a finite
        // float in two, each bool in two, each of the four valid dates in the
        // three date columns. Without one: each valid text in two columns.
        let texts = values
            .iter()
            .filter(|v| matches!(v, Value::Bytes(b) if std::str::from_utf8(b).is_ok()))
            .count();
        assert_eq!(
            kept,
            2 * (9 + 3 + 2 + 2 + 2 + 4 * 3) + texts * 2,
            "pairs kept"
        );
    }

    /// Texts pushed with headroom (here bytes with the high bit set, which
    /// must not count) make the cells, the errors and the arena `push`
    /// makes: texts of every length up to a word and past it, ASCII or not,
    /// valid or not, that other columns read as numbers, bools or dates; in
    /// every column type, with and without each kind of text limit and
    /// repair of invalid UTF-8, and one after another in arenas with 0 to
    /// 21 bytes of room.
    #[test]
    fn text_pushed_with_headroom_is_pushed_as_text_is() {
        let texts: Vec<Vec<u8>> = (0..=17)
            .map(|n| (0..n).map(|i| b'a' + i as u8).collect())
            .chain(
                [
                    "成都",
                    "São Paulo",
                    "é",
                    "0123456789abcdé",
                    "12",
                    "-3.5",
                    "true",
                    "2024-01-02",
                    "2024-01-02 10:00:00",
                    "10:00:00",
                ]
                .map(|t| t.as_bytes().to_vec()),
            )
            .chain([b"\xff".to_vec(), b"ok\xc3".to_vec()])
            .collect();
        let stored: Vec<Vec<u8>> = texts
            .iter()
            .map(|text| [&[0xff; 16][..], text].concat())
            .collect();
        let limits = [
            None,
            Some(TextLimit::Chars(3)),
            Some(TextLimit::Encoding(encoding_rs::GBK)),
        ];
        for (replace, ty, limit, room) in [false, true]
            .into_iter()
            .flat_map(|r| EVERY_TYPE.map(move |t| (r, t)))
            .flat_map(|(r, t)| limits.map(move |l| (r, t, l)))
            .flat_map(|(r, t, l)| (0..=21).map(move |room| (r, t, l, room)))
        {
            let with_room = || {
                let mut batch = RecordBatch::new(1, 64).with_text_limit(limit);
                if replace {
                    batch = batch.replacing_invalid_utf8();
                }
                let filler = "x".repeat(batch.data.capacity() - room - 5);
                batch.push_cell(&Cell::Text(&filler));
                assert_eq!(batch.data.capacity() - batch.data.len(), room);
                batch
            };
            let (mut pushed, mut with_headroom) = (with_room(), with_room());
            for (text, stored) in texts.iter().zip(&stored) {
                let expected = pushed.push(Value::Bytes(text), ty);
                // SAFETY: `stored` holds 16 bytes and then the text.
                let got = unsafe {
                    with_headroom.push_text_with_headroom(stored.as_ptr().add(16), text.len(), ty)
                };
                let case = format!("{text:?} in {ty:?}, {limit:?}, room {room}");
                assert_eq!(got, expected, "{case}");
                assert_eq!(with_headroom.data, pushed.data, "{case}");
                assert_eq!(
                    with_headroom.data.capacity(),
                    pushed.data.capacity(),
                    "{case}"
                );
                assert_eq!(with_headroom.cells_in_row, pushed.cells_in_row, "{case}");
            }
        }
    }

    #[test]
    fn an_appended_batch_reads_back_after_the_rows_before_it() {
        let mut first = RecordBatch::new(2, 0);
        for (i, text) in [(1, "a"), (2, "b")] {
            first.push(Value::Int(i), ColumnType::Int).unwrap();
            first
                .push(Value::Bytes(text.as_bytes()), ColumnType::String)
                .unwrap();
            first.end_row();
        }
        let mut second = RecordBatch::new_in(vec![7; 100], 2, 0);
        second.push(Value::Null, ColumnType::Int).unwrap();
        second.push(Value::Bytes(b"c"), ColumnType::String).unwrap();
        second.end_row();
        first.append(&second);
        assert_eq!(first.rows(), 3);
        let mut reader = first.reader();
        let mut row = Vec::new();
        let mut read = Vec::new();
        while reader.next_row(&mut row) {
            read.push(row.clone());
        }
        assert_eq!(
            read,
            [
                vec![Cell::Int(1), Cell::Text("a")],
                vec![Cell::Int(2), Cell::Text("b")],
                vec![Cell::Null, Cell::Text("c")],
            ]
        );
        assert!(
            second.into_arena().capacity() >= 100,
            "the arena's memory is kept"
        );
    }

    #[test]
    fn cells_come_back_as_written() {
        let dt = LocalDateTime::from_parts((2026, 11, 29), (10, 0, 0), 5);
        let cells = [
            Cell::Null,
            Cell::Bool(true),
            Cell::Bool(false),
            Cell::Int(i64::MIN),
            Cell::Float(-0.5),
            Cell::Text("张伟, \"quoted\"\n"),
            Cell::Date(dt),
            Cell::DateTime(dt),
            Cell::Time(dt),
        ];
        let mut batch = RecordBatch::new(cells.len(), 0);
        for _ in 0..3 {
            for c in &cells {
                batch.push_cell(c);
            }
            batch.end_row();
        }
        assert_eq!(batch.rows(), 3);
        let mut reader = batch.reader();
        let mut row = Vec::new();
        for _ in 0..3 {
            assert!(reader.next_row(&mut row));
            assert_eq!(row, cells);
        }
        assert!(!reader.next_row(&mut row));
    }

    #[test]
    fn string_columns_store_exact_text_of_numbers() {
        let mut batch = RecordBatch::new(3, 0);
        batch
            .push(Value::Int(123_456_789_012_345_678), ColumnType::String)
            .unwrap();
        batch.push(Value::Float(0.1), ColumnType::String).unwrap();
        batch.push(Value::Null, ColumnType::String).unwrap();
        batch.end_row();
        let mut row = Vec::new();
        batch.reader().next_row(&mut row);
        assert_eq!(
            row,
            [
                Cell::Text("123456789012345678"),
                Cell::Text("0.1"),
                Cell::Null
            ]
        );
    }

    #[test]
    fn invalid_utf8_is_replaced_when_asked() {
        let mut batch = RecordBatch::new(1, 0).replacing_invalid_utf8();
        batch
            .push(Value::Bytes(b"a\xffb"), ColumnType::Auto)
            .unwrap();
        batch.end_row();
        let mut row = Vec::new();
        batch.reader().next_row(&mut row);
        assert_eq!(row, [Cell::Text("a\u{FFFD}b")]);
        let mut strict = RecordBatch::new(1, 0);
        assert!(strict
            .push(Value::Bytes(b"a\xffb"), ColumnType::Auto)
            .is_err());
    }

    #[test]
    fn a_rejected_value_reports_why() {
        let mut batch = RecordBatch::new(1, 0);
        assert_eq!(
            batch.push(Value::Bytes(b"12x"), ColumnType::Number),
            Err(CellError::NotANumber)
        );
    }

    #[test]
    #[should_panic(expected = "wrong number of cells")]
    fn a_short_row_is_a_bug_in_the_caller() {
        let mut batch = RecordBatch::new(2, 0);
        batch.push_cell(&Cell::Null);
        batch.end_row();
    }
}
