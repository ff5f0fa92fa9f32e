//! Columns, data types and the rules that turn an incoming value into a cell.
//!
//! Every front end (PHP, gRPC) hands values over as a borrowed [`Value`]; the
//! column's [`ColumnType`] decides what the cell becomes. The result is a
//! [`Cell`], which is what the batch arena stores and the writers read.

use std::fmt;
use std::num::{IntErrorKind, ParseIntError};

/// What a column holds. `Auto` keeps each value's own type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ColumnType {
    #[default]
    Auto,
    String,
    Int,
    Number,
    Bool,
    Date,
    DateTime,
    Time,
    /// A date, with its time of day when the value has one: `2024-01-02`
    /// stays a day, `2024-01-02 10:00` keeps its time. gRPC's one
    /// `DATA_TYPE_DATE` carries both.
    DateOrDateTime,
}

impl ColumnType {
    /// A date, date and time or time column: one that reads a Unix
    /// timestamp as a point in time.
    pub fn is_temporal(self) -> bool {
        matches!(
            self,
            Self::Date | Self::DateTime | Self::Time | Self::DateOrDateTime
        )
    }
}

impl ColumnType {
    pub const NAMES: &'static str =
        "auto, string, int, number, bool, date, datetime, time, date_or_datetime";

    /// Parses the name used in options (`"datetime"`), case-insensitively.
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name.to_ascii_lowercase().as_str() {
            "auto" => Self::Auto,
            "string" | "text" => Self::String,
            "int" | "integer" => Self::Int,
            "number" | "float" | "decimal" => Self::Number,
            "bool" | "boolean" => Self::Bool,
            "date" => Self::Date,
            "datetime" => Self::DateTime,
            "time" => Self::Time,
            "date_or_datetime" => Self::DateOrDateTime,
            _ => return None,
        })
    }
}

/// One output column.
#[derive(Clone, Debug, PartialEq)]
pub struct Column {
    /// Header text.
    pub name: String,
    /// Where an associative row keeps this column's value; defaults to `name`.
    pub key: Option<String>,
    pub column_type: ColumnType,
    /// Excel number format (`#,##0.00`); XLSX only.
    pub number_format: Option<String>,
    /// XLSX column width; `None` leaves Excel's default.
    pub width: Option<ColumnWidth>,
    /// XLSX: the column is hidden.
    pub hidden: bool,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ColumnWidth {
    /// In characters of the default font.
    Chars(f64),
    /// From the widest value written (CJK characters count double).
    Auto,
}

/// How wide text shows in a spreadsheet, in characters: East Asian wide
/// characters take two.
pub fn display_width(text: &str) -> usize {
    text.chars().map(char_width).sum()
}

/// How wide one character shows: see [`display_width`].
pub fn char_width(c: char) -> usize {
    let wide = matches!(u32::from(c),
        0x1100..=0x115F | 0x2E80..=0x303E | 0x3041..=0x33FF | 0x3400..=0x4DBF
        | 0x4E00..=0x9FFF | 0xA000..=0xA4CF | 0xAC00..=0xD7A3 | 0xF900..=0xFAFF
        | 0xFE30..=0xFE4F | 0xFF00..=0xFF60 | 0xFFE0..=0xFFE6 | 0x1F300..=0x1FAFF
        | 0x20000..=0x3FFFD);
    if wide {
        2
    } else {
        1
    }
}

impl Column {
    pub fn new(name: impl Into<String>, column_type: ColumnType) -> Self {
        Self {
            name: name.into(),
            key: None,
            column_type,
            number_format: None,
            width: None,
            hidden: false,
        }
    }

    /// The key an associative row is looked up by.
    pub fn lookup_key(&self) -> &str {
        self.key.as_deref().unwrap_or(&self.name)
    }
}

/// A value as a front end received it, borrowed from the caller's memory.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Value<'a> {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    /// Raw bytes: not yet checked for UTF-8.
    Bytes(&'a [u8]),
    DateTime(LocalDateTime),
}

/// A converted cell, ready for any writer.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Cell<'a> {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(&'a str),
    Date(LocalDateTime),
    DateTime(LocalDateTime),
    Time(LocalDateTime),
}

/// Wall-clock date and time as the value showed it (its UTC offset already
/// applied): spreadsheets have no time zones, so the clock reading is what is kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct LocalDateTime {
    /// Seconds since 1970-01-01 00:00:00 on the wall clock.
    pub seconds: i64,
    pub nanos: u32,
}

const SECONDS_PER_DAY: i64 = 86_400;

/// (year, month, day)
pub type Ymd = (i64, u32, u32);
/// (hour, minute, second)
pub type Hms = (u32, u32, u32);

impl LocalDateTime {
    /// From a checked date (month 1–12, day from 1) and time of day.
    #[inline]
    pub fn from_parts(date: Ymd, time: Hms, nanos: u32) -> Self {
        let days = days_from_civil(date.0, date.1, date.2);
        let secs = i64::from(time.0) * 3600 + i64::from(time.1) * 60 + i64::from(time.2);
        Self {
            seconds: days * SECONDS_PER_DAY + secs,
            nanos,
        }
    }

    /// (year, month, day, hour, minute, second)
    pub fn parts(&self) -> (i64, u32, u32, u32, u32, u32) {
        let days = self.seconds.div_euclid(SECONDS_PER_DAY);
        let secs = self.seconds.rem_euclid(SECONDS_PER_DAY) as u32;
        let (y, m, d) = civil_from_days(days);
        (y, m, d, secs / 3600, secs / 60 % 60, secs % 60)
    }

    /// Excel's serial number, time as the fraction; `None` outside the days
    /// Excel can show, 1900-01-01 to 9999-12-31. From 1900-03-01 on it is
    /// the days since 1899-12-30. Excel counts a 1900-02-29 that never was
    /// (Lotus 1-2-3's leap-year rule, kept for compatibility), so January
    /// and February 1900 are one day lower: 1900-01-01 is 1.
    pub fn excel_serial(&self) -> Option<f64> {
        const UNIX_EPOCH: f64 = 25_569.0;
        const MARCH_1ST_1900: f64 = 61.0;
        const JANUARY_1ST_1900: f64 = 2.0;
        const JANUARY_1ST_10000: f64 = 2_958_466.0;
        const LAST_SECOND_OF_9999: i64 = 253_402_300_799;
        // In the last second Excel can show, a fraction would round the
        // serial up to 2958466.0, the first day it cannot ("end of time"
        // values such as 9999-12-31 23:59:59.999999 became text): that
        // second is kept whole.
        let nanos = if self.seconds == LAST_SECOND_OF_9999 {
            0
        } else {
            self.nanos
        };
        let seconds = self.seconds as f64 + f64::from(nanos) / 1e9;
        let days = UNIX_EPOCH + seconds / SECONDS_PER_DAY as f64;
        if days >= MARCH_1ST_1900 {
            (days < JANUARY_1ST_10000).then_some(days)
        } else {
            (days >= JANUARY_1ST_1900).then_some(days - 1.0)
        }
    }

    /// Only the time of day (for `time` columns), on 1970-01-01.
    pub fn time_of_day(&self) -> Self {
        Self {
            seconds: self.seconds.rem_euclid(SECONDS_PER_DAY),
            nanos: self.nanos,
        }
    }

    /// Only the date (for `date` columns), at midnight; `None` from `i64::MIN`
    /// to the next midnight: that day starts before the first `i64` second.
    pub fn date_only(&self) -> Option<Self> {
        let midnight = self
            .seconds
            .checked_sub(self.seconds.rem_euclid(SECONDS_PER_DAY))?;
        Some(Self {
            seconds: midnight,
            nanos: 0,
        })
    }

    /// The time of day as Excel stores a time: a fraction of a day.
    pub fn excel_time(&self) -> f64 {
        let seconds = self.seconds.rem_euclid(SECONDS_PER_DAY) as f64 + f64::from(self.nanos) / 1e9;
        seconds / SECONDS_PER_DAY as f64
    }
}

// Howard Hinnant's algorithms: exact proleptic Gregorian conversions. Only
// the era (400 years) needs signed arithmetic; within it every quantity is
// small and non-negative, and unsigned division by a constant is a multiply
// and a shift (signed adds corrections): these run for every date cell, on
// the PHP thread and on the CSV writer's.
/// `m` is 1..=12 and `d` at least 1: callers pass parsed, checked dates.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    debug_assert!((1..=12).contains(&m) && d >= 1, "month {m}, day {d}");
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = (y - era * 400) as u32; // 0..=399
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1; // 0..=365
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy; // 0..=146_096
    era * 146_097 + i64::from(doe) - 719_468
}

fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = (z - era * 146_097) as u32; // 0..=146_096
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // 0..=399
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // 0..=365
    let mp = (5 * doy + 2) / 153; // 0..=11
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = i64::from(yoe) + era * 400;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        _ => 28,
    }
}

/// `text.trim()`, called only for text that starts or ends with something
/// other than a visible ASCII character: dates and numbers given as text are
/// trimmed on the PHP thread for every cell, and `str::trim` (Unicode white
/// space) was a third of parsing a date.
fn trimmed(text: &str) -> &str {
    let untrimmed = |b: Option<&u8>| b.is_some_and(|b| !b.is_ascii_graphic());
    let bytes = text.as_bytes();
    if untrimmed(bytes.first()) || untrimmed(bytes.last()) {
        text.trim()
    } else {
        text
    }
}

/// Parses `Y-m-d`, `Y-m-d H:i:s` and ISO 8601 (`T` separator, fractional
/// seconds, `Z` or `±hh:mm` suffix). The clock reading is kept as written; a
/// zone suffix is accepted but does not shift the time. A bare `H:i:s` is no
/// date: it would become a day of 1970 ([`parse_time_or_datetime`] takes
/// it). This runs on the PHP thread for every date cell given as text, and
/// reads bytes.
pub fn parse_datetime(text: &str) -> Option<LocalDateTime> {
    let bytes = trimmed(text).as_bytes();
    if is_time_of_day(bytes) {
        return None;
    }
    parse_date_and_time(bytes)
}

/// What [`parse_datetime`] reads, as UTC: a `±hh:mm` suffix is taken off
/// the clock reading; with `Z` or no suffix, the reading is UTC already.
pub fn parse_utc(text: &str) -> Option<LocalDateTime> {
    let clock = parse_datetime(text)?;
    let bytes = trimmed(text).as_bytes();
    // The zone follows the time; a date alone has none.
    let time = bytes
        .iter()
        .position(|&b| b == b'T' || b == b' ')
        .unwrap_or(bytes.len());
    let zone = bytes[time..]
        .iter()
        .rposition(|&b| b == b'+' || b == b'-')
        .map(|at| &bytes[time + at..])
        .filter(|zone| is_utc_offset(zone));
    let offset = match zone {
        None => 0,
        Some(zone) => {
            let number = |digits: &[u8]| digits.iter().fold(0, |n, d| n * 10 + i64::from(d - b'0'));
            let hours = number(&zone[1..3]);
            let minutes = zone
                .get(zone.len() - 2..)
                .filter(|_| zone.len() > 3)
                .map_or(0, number);
            // The world's offsets run from -12:00 to +14:00.
            if hours > 14 || minutes > 59 {
                return None;
            }
            let seconds = hours * 3600 + minutes * 60;
            if zone[0] == b'-' {
                -seconds
            } else {
                seconds
            }
        }
    };
    let utc = LocalDateTime {
        seconds: clock.seconds - offset,
        nanos: clock.nanos,
    };
    (1..=9999).contains(&utc.parts().0).then_some(utc)
}

/// What a `time` column reads: a bare `H:i:s` (on 1970-01-01) or anything
/// [`parse_datetime`] reads.
pub fn parse_time_or_datetime(text: &str) -> Option<LocalDateTime> {
    let bytes = trimmed(text).as_bytes();
    if !is_time_of_day(bytes) {
        return parse_date_and_time(bytes);
    }
    let (time, nanos, rest) = parse_time(bytes)?;
    rest.is_empty()
        .then(|| LocalDateTime::from_parts((1970, 1, 1), time, nanos))
}

fn parse_date_and_time(bytes: &[u8]) -> Option<LocalDateTime> {
    let (date, rest) = parse_date(bytes)?;
    let Some((&separator, rest)) = rest.split_first() else {
        return Some(LocalDateTime::from_parts(date, (0, 0, 0), 0));
    };
    if separator != b'T' && separator != b' ' {
        return None;
    }
    let (time, nanos, zone) = parse_time(rest)?;
    if !(zone.is_empty() || zone == b"Z" || is_utc_offset(zone)) {
        return None;
    }
    Some(LocalDateTime::from_parts(date, time, nanos))
}

/// Whether trimmed date text starts as an `H:i:s` does.
fn is_time_of_day(trimmed_bytes: &[u8]) -> bool {
    trimmed_bytes.get(2) == Some(&b':')
}

/// `N` ASCII digits (2 or 4: they fit a u32) at the start of `bytes`, and
/// what follows them.
fn digits<const N: usize>(bytes: &[u8]) -> Option<(u32, &[u8])> {
    let (head, rest) = bytes.split_first_chunk::<N>()?;
    let mut value = 0;
    for &b in head {
        let digit = b.wrapping_sub(b'0');
        if digit > 9 {
            return None;
        }
        value = value * 10 + u32::from(digit);
    }
    Some((value, rest))
}

/// `bytes` after a leading `separator`.
fn after(separator: u8, bytes: &[u8]) -> Option<&[u8]> {
    bytes.strip_prefix(&[separator])
}

fn parse_date(bytes: &[u8]) -> Option<(Ymd, &[u8])> {
    let (y, rest) = digits::<4>(bytes)?;
    let (m, rest) = digits::<2>(after(b'-', rest)?)?;
    let (d, rest) = digits::<2>(after(b'-', rest)?)?;
    let y = i64::from(y);
    ((1..=12).contains(&m) && d >= 1 && d <= days_in_month(y, m)).then_some(((y, m, d), rest))
}

fn parse_time(bytes: &[u8]) -> Option<(Hms, u32, &[u8])> {
    let (h, rest) = digits::<2>(bytes)?;
    let (mi, rest) = digits::<2>(after(b':', rest)?)?;
    let (s, mut rest) = match after(b':', rest) {
        Some(r) => digits::<2>(r)?,
        None => (0, rest),
    };
    let mut nanos = 0u32;
    if let Some(frac) = after(b'.', rest) {
        let len = frac.iter().take_while(|b| b.is_ascii_digit()).count();
        if len == 0 {
            return None;
        }
        let kept = &frac[..len.min(9)];
        let value = kept.iter().fold(0, |v, b| v * 10 + u32::from(b - b'0'));
        nanos = value * 10u32.pow(9 - kept.len() as u32);
        rest = &frac[len..];
    }
    (h < 24 && mi < 60 && s < 60).then_some(((h, mi, s), nanos, rest))
}

/// A date as SQL databases return DATE and DATETIME columns, exactly
/// `Y-m-d` or `Y-m-d H:i:s` (or with a `T`): the day's midnight, and the
/// seconds into the day when there is a time. `None` for anything else,
/// which [`parse_datetime`] reads or refuses. Eight bytes at a time: the
/// field-by-field [`parse_datetime`] made a date given as text a third of
/// what `addBatch` spent on a row of the bench mix (callgrind, BENCHMARKS.md).
#[inline(always)]
pub fn parse_sql_datetime(bytes: &[u8]) -> Option<(LocalDateTime, Option<i64>)> {
    let (date, time) = match bytes.len() {
        10 => (bytes, None),
        19 if matches!(bytes[10], b' ' | b'T') => (&bytes[..10], Some(&bytes[11..])),
        _ => return None,
    };
    let head = digits_word(&date[..8], b"0000-00-")?;
    let tail = digits_word(&date[2..], b"00-00-00")?;
    let y = two_digits(head, 0) * 100 + two_digits(head, 2);
    let (m, d) = (two_digits(head, 5), two_digits(tail, 6));
    if !(1..=12).contains(&m) || d == 0 || d > days_in_month(i64::from(y), m) {
        return None;
    }
    let midnight = LocalDateTime::from_parts((i64::from(y), m, d), (0, 0, 0), 0);
    let Some(time) = time else {
        return Some((midnight, None));
    };
    let clock = digits_word(time, b"00:00:00")?;
    let (h, mi, s) = (
        two_digits(clock, 0),
        two_digits(clock, 3),
        two_digits(clock, 6),
    );
    (h < 24 && mi < 60 && s < 60).then(|| {
        let seconds = i64::from(h * 3600 + mi * 60 + s);
        (midnight, Some(seconds))
    })
}

/// Eight bytes read as one word, checked against `shape` (`0` where a digit
/// goes, else the byte itself): each digit's value in its byte, `None` if
/// any byte does not fit.
#[inline(always)]
fn digits_word(bytes: &[u8], shape: &[u8; 8]) -> Option<u64> {
    const ONES: u64 = u64::from_le_bytes([1; 8]);
    let word = u64::from_le_bytes(bytes.try_into().ok()?);
    let digit_bytes = u64::from_le_bytes(shape.map(|b| if b == b'0' { 0xff } else { 0 }));
    let separators = u64::from_le_bytes(*shape) & !digit_bytes;
    let values = (word ^ (ONES * u64::from(b'0'))) & digit_bytes;
    // A byte above 9 (or with its top bit set) sets its top bit here; the
    // 0x7f mask keeps each byte's sum from carrying into the next.
    let over_nine = (((values & (ONES * 0x7f)) + ONES * 0x76) | values) & (ONES * 0x80);
    (over_nine == 0 && word & !digit_bytes == separators).then_some(values)
}

/// The number in the two digit bytes from byte `at` of a [`digits_word`].
#[inline(always)]
fn two_digits(values: u64, at: u32) -> u32 {
    let byte = |i: u32| (values >> (8 * i)) as u32 & 0xff;
    byte(at) * 10 + byte(at + 1)
}

fn is_utc_offset(b: &[u8]) -> bool {
    matches!(b.first(), Some(b'+' | b'-'))
        && match b.len() {
            6 => b[3] == b':' && b[1..3].iter().chain(&b[4..]).all(u8::is_ascii_digit),
            5 | 3 => b[1..].iter().all(u8::is_ascii_digit),
            _ => false,
        }
}

/// Why a value cannot become a cell of its column.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CellError {
    InvalidUtf8 {
        valid_up_to: usize,
    },
    NotFinite,
    NotAnInteger,
    /// A whole number past the 64 bits an `int` column holds.
    IntegerOutOfRange,
    NotANumber,
    NotABool,
    NotADate,
    /// Text a `time` column cannot read.
    NotATime,
    /// A Unix timestamp too far from 1970 to be shown in a time zone.
    TimestampOutOfRange,
    /// A type no column can hold (nested array, resource, object ...).
    Unsupported,
    /// Text longer than its file's cells hold ([`TextLimit::Chars`]).
    TooManyChars {
        chars: usize,
        max: usize,
    },
    /// A character its file's encoding cannot hold ([`TextLimit::Encoding`]).
    Unencodable {
        character: char,
        encoding: &'static encoding_rs::Encoding,
    },
}

impl fmt::Display for CellError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidUtf8 { valid_up_to } => {
                write!(
                    f,
                    "invalid UTF-8 at byte {valid_up_to} \
                     (set invalid_utf8 to replace to write U+FFFD in its place)"
                )
            }
            Self::NotFinite => {
                f.write_str("NAN, INF and numbers beyond ±1.8e308 cannot be written to a file")
            }
            Self::NotAnInteger => f.write_str("not an integer"),
            Self::IntegerOutOfRange => f.write_str(
                "a whole number beyond the 64-bit range of an int column \
                 (-9223372036854775808 to 9223372036854775807); a string column keeps its digits",
            ),
            Self::NotANumber => f.write_str("not a number"),
            Self::NotABool => f.write_str("not a boolean"),
            Self::NotADate => f.write_str("not a date (expected Y-m-d, Y-m-d H:i:s or ISO 8601)"),
            Self::NotATime => f.write_str("not a time (expected H:i:s, Y-m-d H:i:s or ISO 8601)"),
            Self::TimestampOutOfRange => {
                f.write_str("a Unix timestamp too far from 1970 to be shown as a date")
            }
            Self::TooManyChars { chars, max } => write!(
                f,
                "{chars} characters of text, more than the {max} an Excel cell holds \
                 (set long_text to truncate to cut it)"
            ),
            Self::Unencodable {
                character,
                encoding,
            } => write!(
                f,
                "{}, or csv option unencodable => 'replace'",
                cannot_hold(encoding, *character)
            ),
            Self::Unsupported => f.write_str("not a valid cell value"),
        }
    }
}

#[inline(always)]
pub(crate) fn text(bytes: &[u8]) -> Result<&str, CellError> {
    // Most cells are short ASCII, which `is_ascii` checks a word at a time
    // at several times `from_utf8`'s speed.
    if bytes.is_ascii() {
        // SAFETY: ASCII is valid UTF-8.
        return Ok(unsafe { std::str::from_utf8_unchecked(bytes) });
    }
    std::str::from_utf8(bytes).map_err(|e| CellError::InvalidUtf8 {
        valid_up_to: e.valid_up_to(),
    })
}

/// A writer's limit on the text of a cell. Checked as each cell joins its
/// batch ([`crate::batch::RecordBatch::with_text_limit`]), a cell past it
/// rejects its own batch on the producer's thread, instead of failing the
/// whole export when the writer reaches it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TextLimit {
    /// At most this many characters as Excel counts them, in UTF-16 units
    /// (an emoji is two): an Excel cell holds 32,767.
    Chars(usize),
    /// Only characters this encoding holds (a CSV file in GBK or GB18030).
    Encoding(&'static encoding_rs::Encoding),
}

impl TextLimit {
    pub fn check(self, text: &str) -> Result<(), CellError> {
        match self {
            Self::Chars(max) => match utf16_cut(text, max) {
                Some(_) => Err(CellError::TooManyChars {
                    chars: text.encode_utf16().count(),
                    max,
                }),
                None => Ok(()),
            },
            Self::Encoding(encoding) => match first_unencodable(encoding, text) {
                Some(character) => Err(CellError::Unencodable {
                    character,
                    encoding,
                }),
                None => Ok(()),
            },
        }
    }
}

/// Where to cut `text` to keep `max` UTF-16 units (Excel's characters)
/// without splitting a character; `None` when it has no more than that.
pub fn utf16_cut(text: &str, max: usize) -> Option<usize> {
    // No character has more UTF-16 units than UTF-8 bytes.
    if text.len() <= max {
        return None;
    }
    let mut units = 0;
    for (at, c) in text.char_indices() {
        units += c.len_utf16();
        if units > max {
            return Some(at);
        }
    }
    None
}

/// The first character of `text` that `encoding` cannot hold. One pass of
/// an encoder into a stack buffer: it runs on the PHP thread for every
/// non-ASCII text cell of a GBK export.
pub fn first_unencodable(encoding: &'static encoding_rs::Encoding, text: &str) -> Option<char> {
    use encoding_rs::EncoderResult;
    if text.is_ascii() {
        return None;
    }
    let lacked = (encoding == encoding_rs::GBK)
        .then(|| {
            text.char_indices()
                .find(|(_, c)| GB18030_ADDITIONS.binary_search(c).is_ok())
        })
        .flatten();
    let mut encoder = encoding.new_encoder();
    let mut scratch = [0u8; 512];
    let mut read_so_far = 0;
    let unmappable = loop {
        let (result, read, _) =
            encoder.encode_from_utf8_without_replacement(&text[read_so_far..], &mut scratch, true);
        read_so_far += read;
        match result {
            EncoderResult::InputEmpty => break None,
            EncoderResult::OutputFull => {}
            EncoderResult::Unmappable(c) => break Some((read_so_far - c.len_utf8(), c)),
        }
    };
    // The one that comes first, so that the message names the first.
    [lacked, unmappable]
        .into_iter()
        .flatten()
        .min_by_key(|&(at, _)| at)
        .map(|(_, c)| c)
}

/// Characters encoding_rs's GBK (WHATWG's: GB18030's two-byte codes)
/// writes in codes that GBK readers do not know (Windows code page 936,
/// iconv, Python's `gbk`): GB18030's additions, from U+01F9 to U+FE19. Found
/// by writing every character of the BMP as GBK and reading it back with
/// iconv's CP936.
const GB18030_ADDITIONS: [char; 99] = [
    '\u{01F9}', '\u{1E3F}', '\u{2E81}', '\u{2E84}', '\u{2E88}', '\u{2E8B}', '\u{2E8C}', '\u{2E97}',
    '\u{2EA7}', '\u{2EAA}', '\u{2EAE}', '\u{2EB3}', '\u{2EB6}', '\u{2EB7}', '\u{2EBB}', '\u{2ECA}',
    '\u{2FF0}', '\u{2FF1}', '\u{2FF2}', '\u{2FF3}', '\u{2FF4}', '\u{2FF5}', '\u{2FF6}', '\u{2FF7}',
    '\u{2FF8}', '\u{2FF9}', '\u{2FFA}', '\u{2FFB}', '\u{303E}', '\u{3447}', '\u{3473}', '\u{359E}',
    '\u{360E}', '\u{361A}', '\u{3918}', '\u{396E}', '\u{39CF}', '\u{39D0}', '\u{39DF}', '\u{3A73}',
    '\u{3B4E}', '\u{3C6E}', '\u{3CE0}', '\u{4056}', '\u{415F}', '\u{4337}', '\u{43AC}', '\u{43B1}',
    '\u{43DD}', '\u{44D6}', '\u{464C}', '\u{4661}', '\u{4723}', '\u{4729}', '\u{477C}', '\u{478D}',
    '\u{4947}', '\u{497A}', '\u{497D}', '\u{4982}', '\u{4983}', '\u{4985}', '\u{4986}', '\u{499B}',
    '\u{499F}', '\u{49B6}', '\u{49B7}', '\u{4C77}', '\u{4C9F}', '\u{4CA0}', '\u{4CA1}', '\u{4CA2}',
    '\u{4CA3}', '\u{4D13}', '\u{4D14}', '\u{4D15}', '\u{4D16}', '\u{4D17}', '\u{4D18}', '\u{4D19}',
    '\u{4DAE}', '\u{9FB4}', '\u{9FB5}', '\u{9FB6}', '\u{9FB7}', '\u{9FB8}', '\u{9FB9}', '\u{9FBA}',
    '\u{9FBB}', '\u{FE10}', '\u{FE11}', '\u{FE12}', '\u{FE13}', '\u{FE14}', '\u{FE15}', '\u{FE16}',
    '\u{FE17}', '\u{FE18}', '\u{FE19}',
];

/// Whether `c` would be written in GBK as a code GBK readers do not know.
pub fn gbk_readers_lack(encoding: &'static encoding_rs::Encoding, c: char) -> bool {
    encoding == encoding_rs::GBK && GB18030_ADDITIONS.binary_search(&c).is_ok()
}

/// The first character of `text` GBK readers would not know; none but in
/// GBK, where the text is only then read.
pub fn first_lacked_by_gbk_readers(
    encoding: &'static encoding_rs::Encoding,
    text: &str,
) -> Option<char> {
    if encoding != encoding_rs::GBK {
        return None;
    }
    text.chars()
        .find(|c| GB18030_ADDITIONS.binary_search(c).is_ok())
}

/// Why `c` cannot be written in `encoding` (GBK or GB18030), and which
/// encodings could.
pub fn cannot_hold(encoding: &'static encoding_rs::Encoding, c: char) -> String {
    let instead = if encoding == encoding_rs::GBK {
        "GB18030 or UTF-8"
    } else {
        "UTF-8"
    };
    format!(
        "character '{c}' (U+{:04X}) cannot be written in {}; use encoding {instead}",
        u32::from(c),
        encoding.name().to_ascii_uppercase()
    )
}

fn finite(f: f64) -> Result<f64, CellError> {
    if f.is_finite() {
        Ok(f)
    } else {
        Err(CellError::NotFinite)
    }
}

/// Applies a column's type to a value.
///
/// For a `string` column a number, bool or date keeps its typed cell: the
/// batch stores its text form (see [`write_text_form`]), so an 18-digit id
/// given as an int stays exact text.
#[inline(always)]
pub fn convert(value: Value<'_>, column_type: ColumnType) -> Result<Cell<'_>, CellError> {
    use ColumnType as T;
    let cell = match (column_type, value) {
        (_, Value::Null) => Cell::Null,
        (T::Auto, Value::Bool(b)) | (T::Bool, Value::Bool(b)) => Cell::Bool(b),
        (T::Auto, Value::Int(i)) | (T::Int, Value::Int(i)) | (T::Number, Value::Int(i)) => {
            Cell::Int(i)
        }
        (T::Auto, Value::Float(f)) | (T::Number, Value::Float(f)) => Cell::Float(finite(f)?),
        (T::Auto, Value::Bytes(b)) => Cell::Text(text(b)?),
        (T::Auto | T::DateTime | T::DateOrDateTime, Value::DateTime(dt)) => Cell::DateTime(dt),
        (T::String, Value::Bytes(b)) => Cell::Text(text(b)?),
        (T::String, Value::Float(f)) => Cell::Float(finite(f)?),
        (T::String, Value::Int(i)) => Cell::Int(i),
        (T::String, Value::Bool(b)) => Cell::Bool(b),
        (T::String, Value::DateTime(dt)) => Cell::DateTime(dt),
        (T::Int, Value::Float(f))
            if f.fract() == 0.0
                && (-9_223_372_036_854_775_808.0..9_223_372_036_854_775_808.0).contains(&f) =>
        {
            Cell::Int(f as i64)
        }
        (T::Int, Value::Bool(b)) | (T::Number, Value::Bool(b)) => Cell::Int(i64::from(b)),
        (T::Int, Value::Bytes(b)) => Cell::Int(trimmed(text(b)?).parse().map_err(
            |e: ParseIntError| match e.kind() {
                IntErrorKind::PosOverflow | IntErrorKind::NegOverflow => {
                    CellError::IntegerOutOfRange
                }
                _ => CellError::NotAnInteger,
            },
        )?),
        (T::Int, Value::Float(f)) if f.fract() == 0.0 => return Err(CellError::IntegerOutOfRange),
        (T::Int, _) => return Err(CellError::NotAnInteger),
        (T::Number, Value::Bytes(b)) => number_from_text(text(b)?)?,
        (T::Number, _) => return Err(CellError::NotANumber),
        // Only 0 and 1: a 2 or a -5 in a bool column is a mistake to report.
        (T::Bool, Value::Int(i @ (0 | 1))) => Cell::Bool(i == 1),
        (T::Bool, Value::Float(f)) if f == 0.0 || f == 1.0 => Cell::Bool(f == 1.0),
        (T::Bool, Value::Bytes(b)) => Cell::Bool(parse_bool(text(b)?)?),
        (T::Bool, _) => return Err(CellError::NotABool),
        (T::Date | T::DateTime | T::Time | T::DateOrDateTime, v) => {
            let (dt, date_only) = match v {
                Value::DateTime(dt) => (dt, false),
                Value::Bytes(b) if column_type == T::Time => {
                    let dt = parse_time_or_datetime(text(b)?).ok_or(CellError::NotATime)?;
                    (dt, false)
                }
                Value::Bytes(b) => {
                    let text = text(b)?;
                    let dt = parse_datetime(text).ok_or(CellError::NotADate)?;
                    // Of the forms parse_datetime reads, only `Y-m-d` has ten characters.
                    (
                        dt,
                        column_type == T::DateOrDateTime && trimmed(text).len() == 10,
                    )
                }
                Value::Int(unix) => (
                    LocalDateTime {
                        seconds: unix,
                        nanos: 0,
                    },
                    false,
                ),
                _ if column_type == T::Time => return Err(CellError::NotATime),
                _ => return Err(CellError::NotADate),
            };
            match column_type {
                T::Date => Cell::Date(dt.date_only().ok_or(CellError::NotADate)?),
                T::Time => Cell::Time(dt.time_of_day()),
                T::DateOrDateTime if date_only => Cell::Date(dt),
                _ => Cell::DateTime(dt),
            }
        }
    };
    Ok(cell)
}

fn parse_number(s: &str) -> Result<f64, CellError> {
    let s = trimmed(s);
    if let Some(f) = parse_plain_decimal(s) {
        return Ok(f);
    }
    // Rust also accepts "inf"/"nan"/"infinity": those are not numbers a file can hold.
    if s.is_empty()
        || s.bytes()
            .any(|b| b.is_ascii_alphabetic() && b != b'e' && b != b'E')
    {
        return Err(CellError::NotANumber);
    }
    // "1e400" parses, as infinity.
    finite(s.parse::<f64>().map_err(|_| CellError::NotANumber)?)
}

/// A number given as text. A whole number of more than 15 digits, which a
/// double cannot hold exactly (a `BIGINT` id as PDO returns it), stays
/// exact: an int, or beyond 64 bits its digits as given. Anything else is a
/// double.
fn number_from_text(s: &str) -> Result<Cell<'_>, CellError> {
    let t = trimmed(s);
    let digits = t.strip_prefix(['-', '+']).unwrap_or(t);
    if digits.len() > 15 && digits.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(t.parse().map_or(Cell::Text(t), Cell::Int));
    }
    Ok(Cell::Float(parse_number(t)?))
}

/// `[-+]digits[.digits]` of at most 15 digits, as `str::parse` reads it:
/// the digits as an integer `m` and `k` decimals make `m / 10^k`, a division
/// of two exact doubles and so correctly rounded (Clinger's fast path, which
/// `str::parse` takes too, after more general work). `DECIMAL` columns reach
/// PHP as such text, and their parse cost the PHP thread twice what the rest
/// of a cell did. `None` for any other text.
fn parse_plain_decimal(s: &str) -> Option<f64> {
    const SCALES: [f64; 16] = [
        1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
    ];
    let (negative, text) = match s.as_bytes() {
        [b'-', rest @ ..] => (true, rest),
        [b'+', rest @ ..] => (false, rest),
        all => (false, all),
    };
    let mut mantissa = 0u64;
    let mut digits = 0;
    let mut decimals = None;
    for (at, &b) in text.iter().enumerate() {
        match b {
            b'0'..=b'9' => {
                mantissa = mantissa * 10 + u64::from(b - b'0');
                digits += 1;
                if digits > 15 {
                    return None;
                }
            }
            b'.' if decimals.is_none() => decimals = Some(text.len() - at - 1),
            _ => return None,
        }
    }
    if digits == 0 {
        return None;
    }
    // Below 10^15 < 2^53, `mantissa` is exact as a double, and so is 10^k.
    let value = mantissa as f64 / SCALES[decimals.unwrap_or(0)];
    Some(if negative { -value } else { value })
}

fn parse_bool(s: &str) -> Result<bool, CellError> {
    let word = trimmed(s);
    let is_one_of = |words: &[&str]| words.iter().any(|w| word.eq_ignore_ascii_case(w));
    if is_one_of(&["1", "true", "yes", "y", "on"]) {
        Ok(true)
    } else if is_one_of(&["0", "false", "no", "n", "off", ""]) {
        Ok(false)
    } else {
        Err(CellError::NotABool)
    }
}

/// How non-text values are written as text (CSV cells, `string` columns).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TextStyle {
    pub true_text: String,
    pub false_text: String,
    /// Between a float's whole part and its decimals: `.`, or `,` for a
    /// spreadsheet in a locale that writes `1,5` (German, French).
    pub decimal_separator: u8,
    pub date: DatePattern,
    pub datetime: DatePattern,
    pub time: DatePattern,
}

impl Default for TextStyle {
    fn default() -> Self {
        let pattern = |text| DatePattern::new(text).expect("a valid default pattern");
        Self {
            true_text: "TRUE".into(),
            false_text: "FALSE".into(),
            decimal_separator: b'.',
            date: pattern("Y-m-d"),
            datetime: pattern("Y-m-d H:i:s"),
            time: pattern("H:i:s"),
        }
    }
}

impl TextStyle {
    /// The style of `string` columns: `true`/`false` like PHP's var_export.
    pub fn for_string_columns() -> Self {
        Self {
            true_text: "true".into(),
            false_text: "false".into(),
            ..Self::default()
        }
    }
}

/// A date pattern in PHP `date()` letters (`Y y m n d j H G h g i s A a u`;
/// `\\` escapes a letter; anything else is copied), read once into the
/// pieces it writes. The CSV writer writes one for every date cell, and
/// reading the pattern letter by letter each time was most of that cost.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DatePattern {
    text: String,
    pieces: Vec<DatePiece>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum DatePiece {
    /// Characters copied as they are: a run of them is one piece.
    Literal(Vec<u8>),
    /// A field in decimal, zero-padded to `width` digits.
    Number(DateField, usize),
    AmPm {
        upper: bool,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum DateField {
    Year,
    YearOfCentury,
    Month,
    Day,
    Hour,
    Hour12,
    Minute,
    Second,
    Micros,
}

/// Appends `c` to the pattern's last piece if that is literal text, else
/// starts a literal piece with it.
fn push_literal(pieces: &mut Vec<DatePiece>, c: char) {
    let mut utf8 = [0; 4];
    let bytes = c.encode_utf8(&mut utf8).as_bytes();
    match pieces.last_mut() {
        Some(DatePiece::Literal(text)) => text.extend_from_slice(bytes),
        _ => pieces.push(DatePiece::Literal(bytes.to_vec())),
    }
}

impl DatePattern {
    /// The pattern's pieces, or the first letter it does not know.
    pub fn new(text: &str) -> Result<Self, char> {
        use DateField::*;
        let mut pieces = Vec::new();
        let mut chars = text.chars();
        while let Some(c) = chars.next() {
            let piece = match c {
                '\\' => {
                    if let Some(escaped) = chars.next() {
                        push_literal(&mut pieces, escaped);
                    }
                    continue;
                }
                'Y' => DatePiece::Number(Year, 4),
                'y' => DatePiece::Number(YearOfCentury, 2),
                'm' => DatePiece::Number(Month, 2),
                'n' => DatePiece::Number(Month, 1),
                'd' => DatePiece::Number(Day, 2),
                'j' => DatePiece::Number(Day, 1),
                'H' => DatePiece::Number(Hour, 2),
                'G' => DatePiece::Number(Hour, 1),
                'h' => DatePiece::Number(Hour12, 2),
                'g' => DatePiece::Number(Hour12, 1),
                'i' => DatePiece::Number(Minute, 2),
                's' => DatePiece::Number(Second, 2),
                'u' => DatePiece::Number(Micros, 6),
                'A' => DatePiece::AmPm { upper: true },
                'a' => DatePiece::AmPm { upper: false },
                c if c.is_ascii_alphabetic() => return Err(c),
                c => {
                    push_literal(&mut pieces, c);
                    continue;
                }
            };
            pieces.push(piece);
        }
        Ok(Self {
            text: text.to_owned(),
            pieces,
        })
    }

    /// The pattern as it was given.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    fn write(&self, dt: &LocalDateTime, out: &mut Vec<u8>) {
        let (y, m, d, h, mi, sec) = dt.parts();
        for piece in &self.pieces {
            let (field, width) = match piece {
                DatePiece::Literal(bytes) => {
                    extend_short(out, bytes);
                    continue;
                }
                DatePiece::AmPm { upper } => {
                    let text: &[u8] = match (h < 12, upper) {
                        (true, true) => b"AM",
                        (false, true) => b"PM",
                        (true, false) => b"am",
                        (false, false) => b"pm",
                    };
                    out.extend_from_slice(text);
                    continue;
                }
                DatePiece::Number(field, width) => (field, *width),
            };
            let value = match field {
                DateField::Year => match u32::try_from(y) {
                    Ok(year) if year <= 9999 => year,
                    _ => {
                        // As PHP's `Y`: at least four digits after the sign.
                        use std::io::Write;
                        let sign = if y < 0 { "-" } else { "" };
                        let _ = write!(out, "{sign}{:04}", y.unsigned_abs());
                        continue;
                    }
                },
                DateField::YearOfCentury => y.rem_euclid(100) as u32,
                DateField::Month => m,
                DateField::Day => d,
                DateField::Hour => h,
                DateField::Hour12 if h % 12 == 0 => 12,
                DateField::Hour12 => h % 12,
                DateField::Minute => mi,
                DateField::Second => sec,
                DateField::Micros => dt.nanos / 1000,
            };
            push_padded(out, value, width);
        }
    }
}

/// `data.extend_from_slice(bytes)`, without a call to `memcpy` for the
/// short texts most cells hold and numbers are: that call was a sixth of the
/// PHP thread's time in `addBatch`, and the CSV writer copies every field
/// once more.
#[inline(always)]
pub(crate) fn extend_short(data: &mut Vec<u8>, bytes: &[u8]) {
    let len = bytes.len();
    if len > 32 {
        data.extend_from_slice(bytes);
        return;
    }
    data.reserve(len);
    let at = data.len();
    // SAFETY: `reserve` made room for `len` bytes after `at`. Each case
    // copies fixed-size pieces (plain moves, no call) that start and end
    // within `bytes` and within `at..at + len`, overlapping in the middle so
    // that together they cover every byte before `set_len`.
    unsafe {
        let src = bytes.as_ptr();
        let dst = data.as_mut_ptr().add(at);
        match len {
            0 => {}
            1..=3 => {
                *dst = *src;
                *dst.add(len / 2) = *src.add(len / 2);
                *dst.add(len - 1) = *src.add(len - 1);
            }
            4..=7 => {
                std::ptr::copy_nonoverlapping(src, dst, 4);
                std::ptr::copy_nonoverlapping(src.add(len - 4), dst.add(len - 4), 4);
            }
            8..=16 => {
                std::ptr::copy_nonoverlapping(src, dst, 8);
                std::ptr::copy_nonoverlapping(src.add(len - 8), dst.add(len - 8), 8);
            }
            _ => {
                std::ptr::copy_nonoverlapping(src, dst, 16);
                std::ptr::copy_nonoverlapping(src.add(len - 16), dst.add(len - 16), 16);
            }
        }
        data.set_len(at + len);
    }
}

/// `a == b` for the short keys of rows (column names), in a few loads of
/// each side instead of a call to `memcmp`: a keyed row compares one key
/// per cell, and that call was a third of what a keyed cell cost more than
/// a list's (callgrind, BENCHMARKS.md).
#[inline(always)]
pub fn same_key(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    // Two overlapping words from each end cover every byte.
    fn ends<const W: usize>(s: &[u8]) -> ([u8; W], [u8; W]) {
        let head = s[..W].try_into().expect("W bytes");
        let tail = s[s.len() - W..].try_into().expect("W bytes");
        (head, tail)
    }
    match n {
        0 => true,
        1..=3 => a[0] == b[0] && a[n / 2] == b[n / 2] && a[n - 1] == b[n - 1],
        4..=7 => ends::<4>(a) == ends::<4>(b),
        8..=16 => ends::<8>(a) == ends::<8>(b),
        _ => a == b,
    }
}

/// `value` in decimal, zero-padded to `width` digits. This runs for every
/// date cell of a CSV: the usual two- and four-digit fields are written
/// digit by digit, the rest through itoa.
fn push_padded(out: &mut Vec<u8>, value: u32, width: usize) {
    let digit = |v: u32| b'0' + (v % 10) as u8;
    match (width, value) {
        (2, 0..=99) => return out.extend_from_slice(&[digit(value / 10), digit(value)]),
        (4, 0..=9999) => {
            return out.extend_from_slice(&[
                digit(value / 1000),
                digit(value / 100),
                digit(value / 10),
                digit(value),
            ])
        }
        _ => {}
    }
    let mut buf = itoa::Buffer::new();
    let digits = buf.format(value).as_bytes();
    out.extend(std::iter::repeat_n(
        b'0',
        width.saturating_sub(digits.len()),
    ));
    out.extend_from_slice(digits);
}

/// Appends the shortest digits that read back as `f`, never with an
/// exponent: whole numbers through itoa, those with up to six decimals
/// through [`write_short_decimal`], others within 1e-5..1e16 through zmij
/// (twice ryu's speed here, four times `Display`'s), the rest (where zmij
/// would write an exponent) through `Display`. Where two shortest forms are
/// equally near `f` (`74139668933.390625`), zmij picks the even one, as PHP's
/// `var_export` and `json_encode` do; `Display` picks the upper one.
pub fn write_float(f: f64, out: &mut Vec<u8>) {
    use std::io::Write;
    let magnitude = f.abs();
    if magnitude < 1e15 && is_whole(f) {
        if f == 0.0 && f.is_sign_negative() {
            out.extend_from_slice(b"-0");
        } else {
            extend_short(out, itoa::Buffer::new().format(f as i64).as_bytes());
        }
        return;
    }
    if write_short_decimal(f, out) {
        return;
    }
    if (1e-5..1e16).contains(&magnitude) && !is_whole(f) {
        extend_short(out, zmij::Buffer::new().format_finite(f).as_bytes());
        return;
    }
    let _ = write!(out, "{f}");
}

/// Whether `f` is a whole number, for `|f| < 2^63`: `f64::fract` is a call
/// to libm's `trunc` on the x86-64 baseline, this two instructions.
pub(crate) fn is_whole(f: f64) -> bool {
    (f as i64) as f64 == f
}

/// Writes `f` if the shortest decimal that reads back as it has one to six
/// decimals (prices, rates, most measured values), exactly as zmij would,
/// in a third of its time; returns false, having written nothing, for any
/// other float. Floats were a quarter of the CSV writer's time.
///
/// `f` is `m / 2^shift`, so `|f| * 10^6` is `m * 10^6 / 2^shift` exactly, and
/// `r` its nearest integer. `r / 10^6` reads back as `f` if it lies within
/// half the gap to the next float on its side (a quarter of an ulp below a
/// power of two, where the gap below halves); exactly on that edge is a tie,
/// left to zmij. Below 2^33 a step of 10^-6 is wider than an ulp, so any
/// decimal of at most six places that reads back as `f` is `r / 10^6`: the
/// shortest is `r` without its trailing zeros.
pub(crate) fn write_short_decimal(f: f64, out: &mut Vec<u8>) -> bool {
    const SCALE: u128 = 1_000_000;
    let bits = f.to_bits();
    let biased_exponent = ((bits >> 52) & 0x7ff) as u32;
    let shift = 1075u32.wrapping_sub(biased_exponent);
    // From 20 (|f| < 2^33, 2^20 > 10^6) to 100 (within a u128); subnormals,
    // zero, NaN and infinities have other exponents.
    if biased_exponent == 0 || !(20..=100).contains(&shift) {
        return false;
    }
    let mantissa = u128::from(bits & ((1 << 52) - 1) | 1 << 52);
    let scaled = mantissa * SCALE;
    let r = (scaled + (1 << (shift - 1))) >> shift;
    let miss = scaled.abs_diff(r << shift);
    let below_power_of_two = r << shift < scaled && mantissa == 1 << 52;
    if (if below_power_of_two { 4 } else { 2 }) * miss >= SCALE {
        return false;
    }
    let mut units = r as u64;
    let mut decimals = 6;
    while decimals > 0 && units.is_multiple_of(10) {
        units /= 10;
        decimals -= 1;
    }
    if decimals == 0 {
        // A whole number: not this function's to write.
        return false;
    }
    write_decimal(f.is_sign_negative(), units, decimals, out);
    true
}

/// `units / 10^decimals` in decimal, with a leading `0` below one.
fn write_decimal(negative: bool, units: u64, decimals: usize, out: &mut Vec<u8>) {
    let mut buffer = itoa::Buffer::new();
    let digits = buffer.format(units).as_bytes();
    if negative {
        out.push(b'-');
    }
    match digits.len().checked_sub(decimals) {
        Some(whole) if whole > 0 => {
            extend_short(out, &digits[..whole]);
            out.push(b'.');
            extend_short(out, &digits[whole..]);
        }
        _ => {
            out.extend_from_slice(b"0.");
            out.extend(std::iter::repeat_n(b'0', decimals - digits.len()));
            extend_short(out, digits);
        }
    }
}

/// Writes the text form of a cell, as CSV shows it and as a `string` column
/// stores a non-text value. Floats use the shortest round-trip digits and
/// never an exponent (`1e20` → `100000000000000000000`).
pub fn write_text_form(cell: &Cell<'_>, style: &TextStyle, out: &mut Vec<u8>) {
    match *cell {
        Cell::Null => {}
        Cell::Bool(b) => out.extend_from_slice(
            if b {
                &style.true_text
            } else {
                &style.false_text
            }
            .as_bytes(),
        ),
        Cell::Int(i) => extend_short(out, itoa::Buffer::new().format(i).as_bytes()),
        Cell::Float(f) => {
            let start = out.len();
            write_float(f, out);
            if style.decimal_separator != b'.' {
                if let Some(point) = out[start..].iter().position(|&b| b == b'.') {
                    out[start + point] = style.decimal_separator;
                }
            }
        }
        Cell::Text(t) => extend_short(out, t.as_bytes()),
        Cell::Date(dt) => style.date.write(&dt, out),
        Cell::DateTime(dt) => style.datetime.write(&dt, out),
        Cell::Time(dt) => style.time.write(&dt, out),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cell(v: Value<'_>, t: ColumnType) -> Result<Cell<'_>, CellError> {
        convert(v, t)
    }

    #[test]
    fn an_instant_is_read_as_utc() {
        let utc = |text| parse_utc(text).map(|t| t.parts());
        assert_eq!(
            utc("2026-01-01T10:00:00+08:00"),
            Some((2026, 1, 1, 2, 0, 0))
        );
        assert_eq!(utc("2026-01-01 01:30:00-0230"), Some((2026, 1, 1, 4, 0, 0)));
        assert_eq!(
            utc("2026-01-01T10:00:00.5-03"),
            Some((2026, 1, 1, 13, 0, 0))
        );
        assert_eq!(utc("2026-01-01T10:00:00Z"), Some((2026, 1, 1, 10, 0, 0)));
        assert_eq!(utc("2026-01-01 10:00:00"), Some((2026, 1, 1, 10, 0, 0)));
        assert_eq!(utc("2026-01-01"), Some((2026, 1, 1, 0, 0, 0)));
        assert_eq!(utc("2026-01-01 10:00:00 +08:00"), None);
        assert_eq!(utc("2026-01-01T10:00:00+99:99"), None, "no such offset");
        assert_eq!(utc("9999-12-31T23:00:00-02:00"), None, "year 10000");
        assert_eq!(utc("0001-01-01T00:00:00+01:00"), None, "year 0");
    }

    #[test]
    fn floats_are_written_in_their_shortest_form_without_an_exponent() {
        let mut samples = vec![
            0.0, -0.0, 1.0, -12.0, 0.99, 1e-5, 1e-6, 1e15, 1e16, 1e20, -1e300, 5e-324,
        ];
        let mut x = 0x2545_f491_4f6c_dd1d_u64;
        for _ in 0..100_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let f = f64::from_bits(x);
            if f.is_finite() {
                samples.push(f);
                samples.push((x % 10_000_000) as f64 / 100.0);
                samples.push((x % (1 << 50)) as f64 / f64::from(1u32 << (x % 12)));
                samples.push(-((x % (1 << 47)) as f64) / 8.0);
            }
        }
        let mut ties = 0;
        for f in samples {
            let mut out = Vec::new();
            write_float(f, &mut out);
            let written = String::from_utf8(out).unwrap();
            let display = f.to_string();
            if written != display {
                // Only a tie between two shortest forms may differ from
                // Display: the same length, both reading back as `f`.
                assert_eq!(
                    written.len(),
                    display.len(),
                    "{f:e}: {written} vs {display}"
                );
                ties += 1;
            }
            assert!(!written.contains(['e', 'E']), "{written}");
            assert_eq!(
                written.parse::<f64>().unwrap().to_bits(),
                f.to_bits(),
                "{written}"
            );
        }
        assert!(ties > 0, "the samples should include ties");
    }

    #[test]
    fn short_decimals_are_written_as_zmij_writes_them() {
        let zmij_or_display = |f: f64| {
            if f.abs() >= 1e-5 {
                zmij::Buffer::new().format_finite(f).to_owned()
            } else {
                f.to_string()
            }
        };
        let mut x = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut taken = 0;
        // Decimals of one to six places below 2^33, as parsed: every one is
        // taken.
        for _ in 0..300_000 {
            let decimals = (next() % 6 + 1) as u32;
            let units = next() % ((1 << (next() % 33 + 1)) * 10u64.pow(decimals));
            let text = format!("{}e-{decimals}", units | 1);
            let f: f64 = text.parse().unwrap();
            for f in [f, -f] {
                let mut out = Vec::new();
                assert!(write_short_decimal(f, &mut out), "{f:e} not taken");
                assert_eq!(String::from_utf8(out).unwrap(), zmij_or_display(f));
                taken += 1;
            }
        }
        // Sums, products and random bits: whatever is taken is zmij's text.
        let mut samples = vec![
            0.1 + 0.2,
            0.15000000000000002,
            1.0 / 3.0,
            0.5,
            0.25,
            2.0f64.powi(-20),
        ];
        for i in 0..200_000 {
            samples.push(f64::from_bits(next()));
            samples.push((i % 7) as f64 * 0.05);
            samples.push((i % 100_000) as f64 / 100.0 + 0.99);
            samples.push(2.0f64.powi((i % 80) - 40) * (1.0 + (i % 3) as f64 * f64::EPSILON));
        }
        for f in samples
            .into_iter()
            .filter(|f| f.is_finite() && f.fract() != 0.0)
        {
            let mut out = Vec::new();
            if write_short_decimal(f, &mut out) {
                assert_eq!(String::from_utf8(out).unwrap(), zmij_or_display(f), "{f:e}");
                taken += 1;
            } else {
                assert!(out.is_empty());
            }
        }
        assert!(taken > 800_000, "{taken}");
        let mut out = Vec::new();
        assert!(
            !write_short_decimal(0.1 + 0.2, &mut out),
            "0.30000000000000004"
        );
    }

    #[test]
    fn plain_decimals_parse_as_str_parse_does() {
        let mut x = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut cases: Vec<String> = [
            "0",
            "-0",
            "+0.0",
            "-0.0",
            "1.",
            ".5",
            "-.5",
            "007.50",
            "999999999999999",
            "9999999999999999",
            "0.000000000000001",
            "123456789012345.",
            "1.7976931348623157",
            ".",
            "-",
            "+",
            "",
            "1..2",
            "1.2.",
            "--1",
            "1e5",
            "1_000",
            " 1",
            "0x10",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        for _ in 0..300_000 {
            let len = (next() % 18 + 1) as usize;
            let mut text: String = (0..len)
                .map(|_| char::from(b'0' + (next() % 10) as u8))
                .collect();
            if next() % 4 != 0 {
                text.insert((next() % (len as u64 + 1)) as usize, '.');
            }
            match next() % 4 {
                0 => text.insert(0, '-'),
                1 => text.insert(0, '+'),
                _ => {}
            }
            cases.push(text);
        }
        let mut taken = 0;
        for text in &cases {
            let digits = text.bytes().filter(u8::is_ascii_digit).count();
            match parse_plain_decimal(text) {
                Some(f) => {
                    let expected: f64 = text.parse().unwrap();
                    assert_eq!(f.to_bits(), expected.to_bits(), "{text}");
                    taken += 1;
                }
                None => assert!(
                    digits > 15
                        || digits == 0
                        || text.parse::<f64>().is_err()
                        || text.contains('e'),
                    "{text} not taken"
                ),
            }
        }
        assert!(taken > 200_000, "{taken}");
    }

    #[test]
    fn short_copies_append_every_byte() {
        let source: Vec<u8> = (1..=40).collect();
        for len in 0..=source.len() {
            let mut out = b"head".to_vec();
            extend_short(&mut out, &source[..len]);
            assert_eq!(&out[..4], b"head");
            assert_eq!(&out[4..], &source[..len], "{len} bytes");
        }
    }

    #[test]
    // The literals are exact binary values halfway between two shortest
    // forms: every digit is the point.
    #[allow(clippy::excessive_precision)]
    fn float_ties_round_to_even_as_php_does() {
        // `php -r 'var_export(74139668933.390625);'` and so on.
        for (f, php) in [
            (74_139_668_933.390_625, "74139668933.39062"),
            (13_359_451_523_370.312_5, "13359451523370.312"),
            (27_672_855_459_971.937_5, "27672855459971.938"),
            (0.1 + 0.2, "0.30000000000000004"),
        ] {
            let mut out = Vec::new();
            write_float(f, &mut out);
            assert_eq!(String::from_utf8(out).unwrap(), php);
        }
    }

    #[test]
    fn dates_round_trip_through_civil_days() {
        for &(y, m, d) in &[
            (1970, 1, 1),
            (2000, 2, 29),
            (2026, 11, 29),
            (1900, 3, 1),
            (9999, 12, 31),
        ] {
            let dt = LocalDateTime::from_parts((y, m, d), (13, 5, 9), 0);
            assert_eq!(dt.parts(), (y, m, d, 13, 5, 9));
        }
        assert_eq!(
            LocalDateTime::from_parts((1970, 1, 1), (0, 0, 0), 0).seconds,
            0
        );
        // Every day from 1000 BC (year -999) to AD 12000 follows the one
        // before it on the calendar, and converts back to its day number.
        let first = days_from_civil(-999, 1, 1);
        let mut previous = (-1000, 12, 31);
        for day in first..days_from_civil(12_000, 1, 1) {
            let (y, m, d) = civil_from_days(day);
            let (py, pm, pd) = previous;
            let expected = if pd < days_in_month(py, pm) {
                (py, pm, pd + 1)
            } else if pm < 12 {
                (py, pm + 1, 1)
            } else {
                (py + 1, 1, 1)
            };
            assert_eq!((y, m, d), expected, "day {day}");
            assert_eq!(days_from_civil(y, m, d), day);
            previous = (y, m, d);
        }
        let extreme = i64::MAX / SECONDS_PER_DAY;
        for day in [extreme, -extreme] {
            let (y, m, d) = civil_from_days(day);
            assert_eq!(days_from_civil(y, m, d), day);
        }
    }

    #[test]
    fn the_first_character_an_encoding_cannot_hold_is_found_past_a_full_buffer() {
        let long = "中文".repeat(1000);
        assert_eq!(first_unencodable(encoding_rs::GBK, &long), None);
        assert_eq!(
            first_unencodable(encoding_rs::GBK, &format!("{long}😀{long}")),
            Some('😀')
        );
        assert_eq!(first_unencodable(encoding_rs::GBK, "only ascii"), None);
        assert_eq!(first_unencodable(encoding_rs::GB18030, "😀"), None);
        assert_eq!(
            first_unencodable(encoding_rs::GB18030, "a\u{E5E5}"),
            Some('\u{E5E5}')
        );
        // 䶮 is lacked by GBK readers, 😀 by GBK itself: the first is named.
        assert_eq!(first_unencodable(encoding_rs::GBK, "中😀䶮"), Some('😀'));
        assert_eq!(first_unencodable(encoding_rs::GBK, "中䶮😀"), Some('䶮'));
    }

    #[test]
    fn texts_are_cut_at_utf16_units_between_characters() {
        assert_eq!(utf16_cut("abc", 3), None);
        assert_eq!(utf16_cut("abcd", 3), Some(3));
        assert_eq!(utf16_cut("長長長", 3), None, "9 bytes, 3 units");
        assert_eq!(utf16_cut("a😀", 3), None, "3 units");
        assert_eq!(
            utf16_cut("ab😀", 3),
            Some(2),
            "the emoji's second unit is the fourth"
        );
        assert_eq!(utf16_cut(&"😀".repeat(20_000), 32_767), Some(16_383 * 4));
    }

    #[test]
    fn keys_are_compared_as_slices_are() {
        let text: Vec<u8> = (0..40u8).map(|i| b'a' + i % 26).collect();
        let copy = text.clone();
        for n in 0..text.len() {
            let key = &text[..n];
            assert!(same_key(key, &copy[..n]), "{n} bytes");
            assert!(!same_key(key, &text[..n + 1]), "{n} and {} bytes", n + 1);
            for at in 0..n {
                let mut other = key.to_vec();
                other[at] ^= 0x20;
                assert!(!same_key(key, &other), "{n} bytes, byte {at} differs");
            }
        }
    }

    #[test]
    fn sql_dates_are_read_as_parse_datetime_reads_them() {
        let fast = |bytes: &[u8]| {
            parse_sql_datetime(bytes).map(|(midnight, time)| LocalDateTime {
                seconds: midnight.seconds + time.unwrap_or(0),
                nanos: 0,
            })
        };
        // Every day of 400 years (every kind of leap year), then every
        // second of a day.
        let mut day = LocalDateTime::from_parts((1900, 1, 1), (0, 0, 0), 0);
        for _ in 0..146_097 {
            let (y, m, d, ..) = day.parts();
            let text = format!("{y:04}-{m:02}-{d:02}");
            assert_eq!(fast(text.as_bytes()), Some(day), "{text}");
            assert_eq!(parse_datetime(&text), Some(day), "{text}");
            day.seconds += SECONDS_PER_DAY;
        }
        for second in 0..SECONDS_PER_DAY {
            let at = LocalDateTime::from_parts((2024, 2, 29), (0, 0, 0), 0).seconds + second;
            let (y, m, d, h, mi, s) = LocalDateTime {
                seconds: at,
                nanos: 0,
            }
            .parts();
            let text = format!("{y:04}-{m:02}-{d:02}T{h:02}:{mi:02}:{s:02}");
            assert_eq!(fast(text.as_bytes()), parse_datetime(&text), "{text}");
            assert_eq!(fast(text.as_bytes()).map(|dt| dt.seconds), Some(at));
        }
        // Each byte replaced by each other byte: whatever the fast reader
        // takes, parse_datetime reads the same; the rest is left to it.
        let mut taken = 0;
        for template in ["2024-02-29 23:59:59", "1999-12-31T09:05:01", "0000-01-01"] {
            for at in 0..template.len() {
                for byte in 0..=u8::MAX {
                    let mut bytes = template.as_bytes().to_vec();
                    bytes[at] = byte;
                    let Some(dt) = fast(&bytes) else { continue };
                    taken += 1;
                    let text = std::str::from_utf8(&bytes).expect("a date taken is ASCII");
                    assert_eq!(Some(dt), parse_datetime(text), "{text}");
                }
            }
        }
        // Most of the templates' 36 digits can take several values each.
        assert!(taken >= 200, "{taken} variants taken");
        for refused in [
            "2023-02-29",
            "2026-13-01",
            "2026-00-10",
            "2026-01-00",
            "2026-01-32",
            "2026-01-02 24:00:00",
            "2026-01-02 23:60:00",
            "2026-01-02 23:00:60",
            " 2026-01-02",
            "2026-01-02 ",
            "2026-01-02 10:00",
            "+2026-01-02",
            "2026-01-02Z",
        ] {
            assert_eq!(fast(refused.as_bytes()), None, "{refused}");
        }
    }

    #[test]
    fn excel_serial_matches_excel() {
        // Excel shows 2026-11-29 as 46355; noon adds half a day.
        let serial = |ymd, hms| LocalDateTime::from_parts(ymd, hms, 0).excel_serial();
        assert_eq!(serial((2026, 11, 29), (12, 0, 0)), Some(46_355.5));
        // Excel's own serials around its phantom 1900-02-29 (serial 60).
        assert_eq!(serial((1900, 3, 1), (0, 0, 0)), Some(61.0));
        assert_eq!(serial((1900, 2, 28), (18, 0, 0)), Some(59.75));
        assert_eq!(serial((1900, 1, 1), (0, 0, 0)), Some(1.0));
        assert_eq!(
            serial((9999, 12, 31), (23, 59, 59)),
            Some(2_958_465.0 + 86_399.0 / 86_400.0)
        );
        let end_of_time = LocalDateTime::from_parts((9999, 12, 31), (23, 59, 59), 999_999_000);
        assert_eq!(
            end_of_time.excel_serial(),
            serial((9999, 12, 31), (23, 59, 59))
        );
        // Days Excel cannot show.
        assert_eq!(serial((1899, 12, 31), (23, 59, 59)), None);
        assert_eq!(serial((1850, 6, 1), (0, 0, 0)), None);
        assert_eq!(serial((10000, 1, 1), (0, 0, 0)), None);
        let noon = LocalDateTime::from_parts((2026, 11, 29), (18, 0, 0), 0);
        assert_eq!(noon.excel_time(), 0.75);
        assert_eq!(noon.date_only().unwrap().parts(), (2026, 11, 29, 0, 0, 0));
    }

    #[test]
    fn parses_the_documented_date_forms() {
        let p = |s| parse_datetime(s).map(|d| d.parts());
        assert_eq!(p("2026-11-29"), Some((2026, 11, 29, 0, 0, 0)));
        assert_eq!(p("2026-11-29 10:20:30"), Some((2026, 11, 29, 10, 20, 30)));
        assert_eq!(
            p("2026-11-29T10:20:30+08:00"),
            Some((2026, 11, 29, 10, 20, 30))
        );
        assert_eq!(
            p("2026-11-29T10:20:30.5Z"),
            Some((2026, 11, 29, 10, 20, 30))
        );
        assert_eq!(p("10:20:30"), None, "a time of day is no date");
        let t = |s| parse_time_or_datetime(s).map(|d| d.parts());
        assert_eq!(t("10:20:30"), Some((1970, 1, 1, 10, 20, 30)));
        assert_eq!(t("2026-11-29 10:20"), Some((2026, 11, 29, 10, 20, 0)));
        assert_eq!(t("10:20:30 Z"), None);
        assert_eq!(p(" 2026-11-29\n"), Some((2026, 11, 29, 0, 0, 0)));
        assert_eq!(t("\u{3000}10:20\u{a0}"), Some((1970, 1, 1, 10, 20, 0)));
        assert_eq!(p("2026-11-29T"), None);
        assert_eq!(p("2026-11-29_10:20:30"), None);
        assert_eq!(p("2026-11-2"), None);
        assert_eq!(p("2026-1a-29"), None);
        assert_eq!(p("2026-02-30"), None);
        assert_eq!(p("2026-13-01"), None);
        assert_eq!(p("29/11/2026"), None);
        assert_eq!(p("2026-11-29 25:00:00"), None);
        assert_eq!(p("2026-11-29T10:20:30 Europe"), None);
        assert_eq!(
            parse_datetime("2026-11-29T10:20:30.25").unwrap().nanos,
            250_000_000
        );
    }

    #[test]
    fn date_or_datetime_keeps_what_the_value_carries() {
        use ColumnType as T;
        let date = |text| parse_datetime(text).unwrap();
        assert_eq!(
            cell(Value::Bytes(b" 2024-01-02 "), T::DateOrDateTime),
            Ok(Cell::Date(date("2024-01-02")))
        );
        assert_eq!(
            cell(Value::Bytes(b"2024-01-02 00:00:00"), T::DateOrDateTime),
            Ok(Cell::DateTime(date("2024-01-02 00:00:00")))
        );
        assert_eq!(
            cell(Value::Bytes(b"2024-01-02T10:20Z"), T::DateOrDateTime),
            Ok(Cell::DateTime(date("2024-01-02 10:20")))
        );
        assert_eq!(
            cell(Value::Bytes(b"10:20:30"), T::DateOrDateTime),
            Err(CellError::NotADate)
        );
        assert_eq!(
            ColumnType::parse("date_or_datetime"),
            Some(T::DateOrDateTime)
        );
    }

    #[test]
    fn columns_convert_by_type() {
        use ColumnType as T;
        assert_eq!(
            cell(Value::Bytes(b"12.5"), T::Number),
            Ok(Cell::Float(12.5))
        );
        assert_eq!(
            cell(Value::Bytes(b"abc"), T::Number),
            Err(CellError::NotANumber)
        );
        assert_eq!(
            cell(Value::Bytes(b"inf"), T::Number),
            Err(CellError::NotANumber)
        );
        assert_eq!(cell(Value::Bytes(b" 42 "), T::Int), Ok(Cell::Int(42)));
        // White space around is trimmed, Unicode's too.
        let spaced = |text: &'static str| Value::Bytes(text.as_bytes());
        assert_eq!(cell(spaced("\u{a0}7"), T::Int), Ok(Cell::Int(7)));
        assert_eq!(
            cell(spaced("\u{3000}12.5\n"), T::Number),
            Ok(Cell::Float(12.5))
        );
        assert_eq!(cell(spaced(" yes\t"), T::Bool), Ok(Cell::Bool(true)));
        assert_eq!(cell(spaced("4 2"), T::Int), Err(CellError::NotAnInteger));
        for beyond in [
            "9223372036854775808",
            "-9223372036854775809",
            " 123456789012345678901 ",
        ] {
            assert_eq!(
                cell(spaced(beyond), T::Int),
                Err(CellError::IntegerOutOfRange),
                "{beyond}"
            );
        }
        assert_eq!(
            cell(Value::Float(1e19), T::Int),
            Err(CellError::IntegerOutOfRange)
        );
        assert_eq!(
            cell(Value::Float(1.5), T::Int),
            Err(CellError::NotAnInteger)
        );
        assert_eq!(
            cell(Value::Float(9.22e18), T::Int),
            Ok(Cell::Int(9_220_000_000_000_000_000)),
            "it fits"
        );
        assert_eq!(
            cell(Value::Float(-9_223_372_036_854_775_808.0), T::Int),
            Ok(Cell::Int(i64::MIN))
        );
        assert_eq!(
            cell(Value::Bytes(b"4.2"), T::Int),
            Err(CellError::NotAnInteger)
        );
        assert_eq!(cell(Value::Float(3.0), T::Int), Ok(Cell::Int(3)));
        assert_eq!(cell(Value::Bytes(b"yes"), T::Bool), Ok(Cell::Bool(true)));
        assert_eq!(cell(Value::Int(1), T::Bool), Ok(Cell::Bool(true)));
        assert_eq!(cell(Value::Float(0.0), T::Bool), Ok(Cell::Bool(false)));
        for not_0_or_1 in [
            Value::Int(2),
            Value::Int(-5),
            Value::Float(0.5),
            Value::Float(-1.0),
        ] {
            assert_eq!(
                cell(not_0_or_1, T::Bool),
                Err(CellError::NotABool),
                "{not_0_or_1:?}"
            );
        }
        for (text, truth) in [
            ("1", true),
            ("TRUE", true),
            ("Yes", true),
            ("y", true),
            ("oN", true),
            ("0", false),
            ("False", false),
            ("NO", false),
            ("n", false),
            ("OFF", false),
            ("", false),
            (" \t", false),
        ] {
            let parsed = cell(Value::Bytes(text.as_bytes()), T::Bool);
            assert_eq!(parsed, Ok(Cell::Bool(truth)), "{text:?}");
        }
        for not_a_bool in ["yess", "tru", "2", "nO!", "ON\u{307}", "\u{130}"] {
            let parsed = cell(Value::Bytes(not_a_bool.as_bytes()), T::Bool);
            assert_eq!(parsed, Err(CellError::NotABool), "{not_a_bool:?}");
        }
        assert_eq!(
            cell(Value::Bytes(b"maybe"), T::Bool),
            Err(CellError::NotABool)
        );
        assert_eq!(
            cell(Value::Float(f64::NAN), T::Auto),
            Err(CellError::NotFinite)
        );
        // Whole numbers a double cannot hold exactly stay exact.
        let number = |t: &'static str| cell(Value::Bytes(t.as_bytes()), T::Number);
        assert_eq!(
            number("123456789012345678"),
            Ok(Cell::Int(123_456_789_012_345_678))
        );
        assert_eq!(number(" -9223372036854775808"), Ok(Cell::Int(i64::MIN)));
        assert_eq!(
            number("9007199254740993"),
            Ok(Cell::Int(9_007_199_254_740_993))
        );
        assert_eq!(
            number("12345678901234567890123"),
            Ok(Cell::Text("12345678901234567890123"))
        );
        assert_eq!(
            number("999999999999999"),
            Ok(Cell::Float(999_999_999_999_999.0))
        );
        assert_eq!(
            number("1234567890123456.5"),
            Ok(Cell::Float(1_234_567_890_123_456.5))
        );
        for beyond_f64 in ["1e400", "-1e400", " 2e308"] {
            let parsed = cell(Value::Bytes(beyond_f64.as_bytes()), T::Number);
            assert_eq!(parsed, Err(CellError::NotFinite), "{beyond_f64}");
        }
        assert_eq!(
            cell(Value::Bytes(b"1.7e308"), T::Number),
            Ok(Cell::Float(1.7e308))
        );
        assert_eq!(cell(Value::Null, T::Int), Ok(Cell::Null));
        assert_eq!(
            cell(Value::Bytes(b"a\xffb"), T::Auto),
            Err(CellError::InvalidUtf8 { valid_up_to: 1 })
        );
        assert_eq!(
            cell(Value::Int(123_456_789_012_345_678), T::String),
            Ok(Cell::Int(123_456_789_012_345_678))
        );
        let Ok(Cell::Time(t)) = cell(Value::Bytes(b"2026-11-29 08:30:00"), T::Time) else {
            panic!("time column must give a time")
        };
        assert_eq!(t.parts(), (1970, 1, 1, 8, 30, 0));
        assert_eq!(cell(Value::Bytes(b"x"), T::Date), Err(CellError::NotADate));
        assert_eq!(cell(Value::Float(1.5), T::Time), Err(CellError::NotATime));
        // A bare time is a time of day, never a day of 1970.
        let bare = || Value::Bytes(b" 03:04:05");
        let Ok(Cell::Time(t)) = cell(bare(), T::Time) else {
            panic!("a time column takes a bare time")
        };
        assert_eq!(t.parts(), (1970, 1, 1, 3, 4, 5));
        assert_eq!(cell(bare(), T::Date), Err(CellError::NotADate));
        assert_eq!(cell(bare(), T::DateTime), Err(CellError::NotADate));
        assert_eq!(
            cell(Value::Bytes(b"25:00:00"), T::Time)
                .unwrap_err()
                .to_string(),
            "not a time (expected H:i:s, Y-m-d H:i:s or ISO 8601)"
        );
    }

    #[test]
    fn extreme_timestamps_in_date_columns_do_not_overflow() {
        // Found by fuzzing (batch_arena): PHP_INT_MIN's midnight is below i64::MIN.
        assert_eq!(
            cell(Value::Int(i64::MIN), ColumnType::Date),
            Err(CellError::NotADate)
        );
        let Ok(Cell::Date(d)) = cell(Value::Int(i64::MAX), ColumnType::Date) else {
            panic!("PHP_INT_MAX has a midnight")
        };
        assert_eq!(d.seconds, i64::MAX - i64::MAX.rem_euclid(SECONDS_PER_DAY));
        assert!(matches!(
            cell(Value::Int(i64::MIN), ColumnType::Time),
            Ok(Cell::Time(_))
        ));
    }

    #[test]
    fn text_form_has_no_exponent_and_exact_ints() {
        let show = |c: Cell<'_>| {
            let mut out = Vec::new();
            write_text_form(&c, &TextStyle::default(), &mut out);
            String::from_utf8(out).unwrap()
        };
        assert_eq!(show(Cell::Float(1e20)), "100000000000000000000");
        assert_eq!(show(Cell::Float(0.1)), "0.1");
        assert_eq!(show(Cell::Float(3.0)), "3");
        assert_eq!(show(Cell::Int(i64::MIN)), "-9223372036854775808");
        assert_eq!(show(Cell::Bool(false)), "FALSE");
        let dt = LocalDateTime::from_parts((2026, 1, 2), (3, 4, 5), 0);
        assert_eq!(show(Cell::Date(dt)), "2026-01-02");
        assert_eq!(show(Cell::DateTime(dt)), "2026-01-02 03:04:05");
        assert_eq!(show(Cell::Time(dt)), "03:04:05");
    }

    #[test]
    fn cjk_characters_count_double() {
        assert_eq!(display_width("abc"), 3);
        assert_eq!(display_width("张伟"), 4);
        assert_eq!(display_width("Ａ1"), 3);
    }

    #[test]
    fn date_patterns_follow_php_date_letters() {
        let style = TextStyle {
            date: DatePattern::new("d/m/Y").unwrap(),
            datetime: DatePattern::new("n/j/y g:i A \\a\\t u").unwrap(),
            ..TextStyle::default()
        };
        let dt = LocalDateTime::from_parts((2026, 1, 2), (15, 4, 5), 250_000_000);
        let mut out = Vec::new();
        write_text_form(&Cell::Date(dt), &style, &mut out);
        out.push(b'|');
        write_text_form(&Cell::DateTime(dt), &style, &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "02/01/2026|1/2/26 3:04 PM at 250000"
        );
        let chinese = DatePattern::new("Y年n月j日 \\\\").unwrap();
        let mut out = Vec::new();
        chinese.write(&dt, &mut out);
        assert_eq!(String::from_utf8(out).unwrap(), "2026年1月2日 \\");
        assert!(DatePattern::new("Y-m-d \\T H:i").is_ok());
        assert_eq!(DatePattern::new("D, d M Y"), Err('D'));
        let ymd = DatePattern::new("Y-m-d").unwrap();
        for (year, shown) in [
            (-44, "-0044-03-15"),
            (10_000, "10000-03-15"),
            (7, "0007-03-15"),
        ] {
            let mut out = Vec::new();
            ymd.write(
                &LocalDateTime::from_parts((year, 3, 15), (0, 0, 0), 0),
                &mut out,
            );
            assert_eq!(
                String::from_utf8(out).unwrap(),
                shown,
                "as PHP's date('Y-m-d')"
            );
        }
    }
}
