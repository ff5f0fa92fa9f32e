//! PHP values → core types. Each row is walked once and each cell copied
//! once, into the batch arena; no zval is kept after the call returns.

use ext_php_rs::convert::IntoZvalDyn;
use ext_php_rs::ffi::{
    zend_array_destroy, zend_string, Bucket, IS_DOUBLE, IS_FALSE, IS_LONG, IS_NULL, IS_OBJECT,
    IS_STRING, IS_TRUE,
};
use ext_php_rs::flags::DataType;
use ext_php_rs::types::{ZendCallable, ZendHashTable, ZendObject, Zval};
use ext_php_rs::zend::{ClassEntry, ExecutorGlobals};

use crate::batch::RecordBatch;
use crate::config::OptionValue;
use crate::error::ExportError;
use crate::schema::{self, CellError, Column, LocalDateTime, Value};

/// A PHP array of options as an option tree.
pub fn options(ht: &ZendHashTable) -> OptionValue {
    if ht.has_sequential_keys() {
        return OptionValue::List(ht.values().map(option).collect());
    }
    OptionValue::Map(ht.iter().map(|(k, v)| (k.to_string(), option(v))).collect())
}

fn option(zv: &Zval) -> OptionValue {
    let zv = zv.dereference();
    match zv.get_type() {
        DataType::Null => OptionValue::Null,
        DataType::True => OptionValue::Bool(true),
        DataType::False => OptionValue::Bool(false),
        DataType::Long => OptionValue::Int(zv.long().unwrap_or_default()),
        DataType::Double => OptionValue::Float(zv.double().unwrap_or_default()),
        DataType::String => {
            let bytes = zv.zend_str().map(|s| s.as_bytes()).unwrap_or_default();
            std::str::from_utf8(bytes).map_or(OptionValue::InvalidUtf8, |text| {
                OptionValue::Str(text.to_owned())
            })
        }
        DataType::Array => zv.array().map_or(OptionValue::Null, options),
        _ => OptionValue::Other,
    }
}

/// The type name from PHP's own `get_debug_type()` (`resource (stream)`,
/// class names): only called on the error path.
fn debug_type(zv: &Zval) -> String {
    ZendCallable::try_from_name("get_debug_type")
        .and_then(|f| f.try_call(vec![zv]))
        .ok()
        .and_then(|name| name.string())
        .unwrap_or_else(|| zv.get_type().to_string())
}

/// Why a PHP value is not a cell.
enum Fault {
    Cell(CellError),
    /// The object's method threw or returned something unusable.
    Object(String),
}

fn class_named(name: &str) -> Option<&'static ClassEntry> {
    ClassEntry::try_find(name)
}

/// A PHP value (already dereferenced) by its type: what [`push`] converts.
enum PhpValue<'a> {
    /// A live `zend_string`, by pointer: its text is read with the header
    /// before it ([`RecordBatch::push_text_with_headroom`]).
    Text(*const zend_string),
    Int(i64),
    Float(f64),
    Null,
    Bool(bool),
    Object(&'a ZendObject),
    /// An array, a resource: no cell value.
    Other,
}

/// Reads `zv` with one dispatch on its type byte, as Zend's `Z_TYPE` and
/// `Z_LVAL`… do. The ext-php-rs accessors tried in turn (`zend_str()`, then
/// `long()`, …) each look through a reference again when they miss: they
/// were 37 of the 84 instructions a null cell cost, 52 with this dispatch
/// (callgrind, `php-bench/walk-by-kind.php`'s null rows).
#[inline(always)]
fn php_value(zv: &Zval) -> PhpValue<'_> {
    // SAFETY: Zend sets a zval's type byte (`u1.v.type_`) with its value, and
    // the value union then holds the member that type names: `lval`, `dval`,
    // or a pointer to a live `zend_string` or `zend_object` that the zval
    // holds a reference to, so it outlives the borrow of `zv`.
    unsafe {
        match u32::from(zv.u1.v.type_) {
            IS_STRING => PhpValue::Text(zv.value.str_),
            IS_LONG => PhpValue::Int(zv.value.lval),
            IS_DOUBLE => PhpValue::Float(zv.value.dval),
            IS_NULL => PhpValue::Null,
            // One arm, so that the jump on the type goes one way for true
            // and false: a column of both sent it two ways, which the CPU
            // mispredicted (the walk of the bench's rows, a third of them
            // false: 6.8 → 6.1 ns per cell, BENCHMARKS.md).
            kind @ (IS_TRUE | IS_FALSE) => PhpValue::Bool(kind == IS_TRUE),
            IS_OBJECT => PhpValue::Object(&*zv.value.obj),
            _ => PhpValue::Other,
        }
    }
}

/// Appends one PHP value (already dereferenced) to the batch, converted by
/// the column's type. Each kind calls the inlined `RecordBatch::push`
/// itself, so that its conversion is specialised for that kind. Inlined into
/// the row loops: as a call, its entry and exit were a seventh of its cost.
#[inline(always)]
fn push(
    batch: &mut RecordBatch,
    zv: &Zval,
    column: &Column,
    zone: &ExportZone,
) -> Result<(), Fault> {
    let ty = column.column_type;
    let pushed = match php_value(zv) {
        // SAFETY: `string` is a live `zend_string` (`php_value`), whose
        // `len` bytes of text at `val` its header precedes in the same
        // allocation: `gc`, `h` and `len`, 16 bytes or more on any target,
        // all set when it was made, and written by this thread only.
        PhpValue::Text(string) => unsafe {
            let text = std::ptr::addr_of!((*string).val).cast::<u8>();
            batch.push_text_with_headroom(text, (*string).len, ty)
        },
        PhpValue::Int(i) => {
            let i = if ty.is_temporal() {
                zone.wall_clock(i)?
            } else {
                i
            };
            batch.push(Value::Int(i), ty)
        }
        PhpValue::Float(f) => batch.push(Value::Float(f), ty),
        PhpValue::Null => batch.push(Value::Null, ty),
        PhpValue::Bool(b) => batch.push(Value::Bool(b), ty),
        PhpValue::Object(obj) => return push_object(batch, zv, obj, column, zone),
        PhpValue::Other => return Err(Fault::Cell(CellError::Unsupported)),
    };
    pushed.map_err(Fault::Cell)
}

/// Calls a PHP function; `None` if it cannot be called.
fn call_function(name: &str, args: Vec<&dyn IntoZvalDyn>) -> Option<Zval> {
    ZendCallable::try_from_name(name)
        .and_then(|f| f.try_call(args))
        .ok()
}

/// Where an export shows dates: Unix timestamps as `date()` shows them, in
/// the export's `timezone`, else in PHP's default time zone; and
/// `DateTimeInterface` values in that `timezone`, else in their own. The
/// zone's UTC offsets from 1800 to 2200 are read from PHP once per export,
/// at the first date.
pub struct ExportZone {
    name: Option<String>,
    offsets: std::cell::OnceCell<Option<ZoneOffsets>>,
}

struct ZoneOffsets {
    zone: Zval,
    /// (from, UTC offset in seconds), in order; the first is from `FIRST`.
    transitions: Vec<(i64, i64)>,
}

impl ZoneOffsets {
    /// 1800-01-01 and 2200-01-01 UTC.
    const FIRST: i64 = -5_364_662_400;
    const END: i64 = 7_258_118_400;

    fn read(name: Option<&str>) -> Option<Self> {
        let name = match name {
            Some(name) => name.to_owned(),
            None => call_function("date_default_timezone_get", vec![])?.string()?,
        };
        let zone = call_function("timezone_open", vec![&name]).filter(Zval::is_object)?;
        // None for zones PHP keeps as a rule or an offset (CET, EST,
        // +08:00): a fixed offset is read once, and PHP answers for each
        // timestamp of the others.
        let mut transitions: Vec<(i64, i64)> = call_function(
            "timezone_transitions_get",
            vec![&zone, &Self::FIRST, &Self::END],
        )
        .and_then(|list| {
            let list = list.array()?;
            Some(
                list.values()
                    .filter_map(|t| {
                        let t = t.array()?;
                        Some((t.get("ts")?.long()?, t.get("offset")?.long()?))
                    })
                    .collect(),
            )
        })
        .unwrap_or_default();
        if transitions.is_empty() {
            transitions.extend(Self::fixed_offset(&zone).map(|offset| (Self::FIRST, offset)));
        }
        Some(Self { zone, transitions })
    }

    /// The offset of a zone written as one (`+08:00`), which never changes.
    fn fixed_offset(zone: &Zval) -> Option<i64> {
        let name = call_function("timezone_name_get", vec![zone])?.string()?;
        if !name.starts_with(['+', '-']) {
            return None;
        }
        let epoch = call_function("date_create", vec![&"@0"])?;
        call_function("timezone_offset_get", vec![zone, &epoch])?.long()
    }

    fn offset_at(&self, unix: i64) -> Option<i64> {
        if !self.transitions.is_empty() && (Self::FIRST..Self::END).contains(&unix) {
            let after = self.transitions.partition_point(|&(from, _)| from <= unix);
            return Some(self.transitions[after.saturating_sub(1)].1);
        }
        // Outside the table, or no table: PHP's own answer for this one.
        let date = call_function("date_create", vec![&format!("@{unix}")])?;
        call_function("timezone_offset_get", vec![&self.zone, &date])?.long()
    }
}

impl ExportZone {
    /// Checks a zone name the way `new DateTimeZone()` does, so that what
    /// PHP takes is taken: `Asia/Shanghai`, `utc`, older names such as
    /// `US/Eastern`, abbreviations (`CET`) and offsets (`+08:00`). Opened
    /// with warnings off, so that a bad one leaves none in the output.
    pub fn check(name: &str) -> Result<(), ExportError> {
        // Zone names are printable ASCII (PHP skips spaces around them); a
        // NUL makes timezone_open() throw.
        let printable =
            !name.trim().is_empty() && name.bytes().all(|b| b == b' ' || b.is_ascii_graphic());
        let opened = printable && {
            let level = call_function("error_reporting", vec![&0i64]);
            let opened = call_function("timezone_open", vec![&name]).is_some_and(|z| z.is_object());
            // An error handler that throws on the warning, whatever
            // error_reporting says: its exception is about this probe.
            drop(ExecutorGlobals::take_exception());
            if let Some(level) = level.and_then(|l| l.long()) {
                call_function("error_reporting", vec![&level]);
            }
            opened
        };
        if opened {
            Ok(())
        } else {
            Err(ExportError::invalid_option(format!(
                "option \"timezone\": unknown time zone \"{}\" (use an IANA name such as Asia/Shanghai, or an offset such as +08:00)",
                name.escape_debug()
            )))
        }
    }

    /// For a `timezone` [`ExportZone::check`] accepted, or none.
    pub fn new(name: Option<String>) -> Self {
        Self {
            name,
            offsets: std::cell::OnceCell::new(),
        }
    }

    fn offsets(&self) -> Result<&ZoneOffsets, Fault> {
        self.offsets
            .get_or_init(|| ZoneOffsets::read(self.name.as_deref()))
            .as_ref()
            .ok_or(Fault::Cell(CellError::NotADate))
    }

    /// `unix` as the zone's wall-clock seconds.
    fn wall_clock(&self, unix: i64) -> Result<i64, Fault> {
        self.offsets()?
            .offset_at(unix)
            .and_then(|offset| unix.checked_add(offset))
            .ok_or(Fault::Cell(CellError::TimestampOutOfRange))
    }

    /// The wall-clock time of a `DateTimeInterface` in the export's
    /// `timezone`, or in its own. From the timestamp and the zone's offset,
    /// not from formatted text: that is any year PHP holds, `-0044` or
    /// `10000` as well.
    fn local_time(&self, date: &Zval) -> Result<LocalDateTime, Fault> {
        let call = |target: &Zval, method: &str, args| {
            call_method(target, "DateTimeInterface", method, args)
        };
        let seconds = call(date, "getTimestamp", vec![])?.long();
        let offset = match &self.name {
            Some(_) => call(&self.offsets()?.zone, "getOffset", vec![date])?.long(),
            None => call(date, "getOffset", vec![])?.long(),
        };
        let micros = call(date, "format", vec![&"u"])?
            .str()
            .and_then(|u| u.parse::<u32>().ok());
        match (seconds, offset, micros) {
            (Some(s), Some(o), Some(u)) if s.checked_add(o).is_some() => Ok(LocalDateTime {
                seconds: s + o,
                nanos: u * 1000,
            }),
            _ => Err(Fault::Cell(CellError::NotADate)),
        }
    }
}

/// Calls a PHP method of a cell's object. A method that throws fails the
/// cell, so the whole batch is rejected: ext-php-rs returns whatever the
/// method left in its return value and leaves the exception pending, which
/// PHP would throw only after `addBatch` had kept the rest of the batch.
/// The method's own exception is the one the caller then sees.
fn call_method(
    target: &Zval,
    interface: &str,
    method: &str,
    args: Vec<&dyn IntoZvalDyn>,
) -> Result<Zval, Fault> {
    let result = target.try_call_method(method, args);
    if let Some(class) = ExecutorGlobals::pending_exception_class() {
        return Err(Fault::Object(format!(
            "{interface}::{method}() threw {class}"
        )));
    }
    result.map_err(|e| Fault::Object(format!("{interface}::{method}() failed: {e}")))
}

/// `DateTimeInterface` becomes a date; `Stringable` its string.
fn push_object(
    batch: &mut RecordBatch,
    zv: &Zval,
    obj: &ZendObject,
    column: &Column,
    zone: &ExportZone,
) -> Result<(), Fault> {
    let is = |name| class_named(name).is_some_and(|ce| obj.instance_of(ce));
    if is("DateTimeInterface") {
        let parsed = zone.local_time(zv)?;
        return batch
            .push(Value::DateTime(parsed), column.column_type)
            .map_err(Fault::Cell);
    }
    if is("Stringable") {
        let text = call_method(zv, "Stringable", "__toString", vec![])?;
        let bytes = text.zend_str().map(|s| s.as_bytes()).unwrap_or_default();
        return batch
            .push(Value::Bytes(bytes), column.column_type)
            .map_err(Fault::Cell);
    }
    Err(Fault::Cell(CellError::Unsupported))
}

fn cell_error(index: usize, column: &Column, zv: &Zval, fault: Fault) -> ExportError {
    let reason = match fault {
        Fault::Cell(CellError::Unsupported) => match zv.get_type() {
            DataType::Array => "a nested array is not a cell value".to_owned(),
            DataType::Object(_) => {
                "an object must be a DateTimeInterface or Stringable to be a cell value".to_owned()
            }
            _ => "not a valid cell value".to_owned(),
        },
        Fault::Cell(e) => e.to_string(),
        Fault::Object(msg) => msg,
    };
    ExportError::invalid_row(format!(
        "row {index}, column \"{}\": {reason} (got {})",
        column.name,
        debug_type(zv)
    ))
}

/// Zend/zend_hash.h; the same since PHP 7.0.
const HASH_FLAG_PACKED: u32 = 1 << 2;

fn is_packed(ht: &ZendHashTable) -> bool {
    // SAFETY: `u.flags` is the u32 view of the flag bytes, which Zend
    // initialises with every array.
    unsafe { ht.u.flags & HASH_FLAG_PACKED != 0 }
}

/// The values of a list (a packed array without holes: what `[...]` and
/// `$a[] = ...` make), read in place. Going through `zend_hash_index_find`
/// per cell and PHP's iterator per row cost a tenth of `addBatch`. `None`
/// for any other array, which is read through the hash API.
///
/// The values must not be changed while the slice lives. They are not: an
/// array held by value is shared with the caller's argument, so PHP copies
/// it before any write (copy on write); a row reached through a PHP
/// reference is [`Pinned`] for the same effect.
pub fn list_values(ht: &ZendHashTable) -> Option<&[Zval]> {
    let used = ht.nNumUsed as usize;
    if !is_packed(ht) || ht.nNumUsed != ht.nNumOfElements {
        return None;
    }
    if used == 0 {
        return Some(&[]);
    }
    // SAFETY: a packed array keeps its values as `nNumUsed` zvals at
    // `arPacked` (PHP 8.2's layout, the one the bindings were generated
    // from: older headers have no `arPacked` and would not compile), and
    // with as many elements as slots none is a hole (IS_UNDEF). The slice
    // borrows `ht`, which outlives it unchanged (see above).
    Some(unsafe { std::slice::from_raw_parts(ht.__bindgen_anon_1.arPacked.cast_const(), used) })
}

/// The buckets (value, key) of a keyed array in its order; empty for a
/// packed array, and for one with deleted elements (rare in rows: those are
/// read by lookup). Keyed rows (`PDO::FETCH_ASSOC`, `['id' => …]`) usually
/// hold the columns' keys in the columns' order, so the bucket after the
/// last one read is checked first: a hash lookup per cell made keyed rows
/// cost twice what lists cost in `addBatch`. Unchanged while the slice
/// lives, as for [`list_values`].
fn buckets(ht: &ZendHashTable) -> &[Bucket] {
    if is_packed(ht) || ht.nNumUsed == 0 || ht.nNumUsed != ht.nNumOfElements {
        return &[];
    }
    // SAFETY: a hash (not packed) array with slots in use keeps `nNumUsed`
    // buckets at `arData`, in insertion order; with as many elements as
    // slots, none is a deleted element's.
    unsafe {
        std::slice::from_raw_parts(
            ht.__bindgen_anon_1.arData.cast_const(),
            ht.nNumUsed as usize,
        )
    }
}

/// Whether every key of an array that is not packed is an integer. One
/// with deleted elements has no [`buckets`] to look at: its keys are asked
/// one by one.
fn integer_keys(cells: &ZendHashTable, buckets: &[Bucket]) -> bool {
    if buckets.is_empty() {
        cells.has_numerical_keys()
    } else {
        buckets.iter().all(|b| b.key.is_null())
    }
}

/// The value of `bucket` if it holds `key`.
fn keyed_value<'a>(bucket: &'a Bucket, key: &str) -> Option<&'a Zval> {
    // SAFETY: the bucket holds an element (see `buckets`), so its key is
    // null (an integer key) or a zend_string the array holds a reference to.
    let bucket_key = unsafe { bucket.key.as_ref() }?;
    schema::same_key(bucket_key.as_bytes(), key.as_bytes()).then_some(&bucket.val)
}

/// An extra reference on a row reached through a PHP reference
/// (`$rows[] = &$row`), for as long as it is read. Code that runs during the
/// read (`__toString()`, a `DateTimeInterface` subclass) could otherwise
/// change `$row` in place, or free it, under the reader; with the extra
/// reference PHP copies before it writes. Rows held by value need none.
struct Pinned(*mut ZendHashTable);

impl Pinned {
    fn new(row: &Zval) -> Option<Self> {
        if !row.is_reference() {
            return None;
        }
        let value = row.dereference();
        if value.array().is_none_or(ZendHashTable::is_immutable) {
            // Not an array, or one PHP never changes nor frees.
            return None;
        }
        // SAFETY: `value` is an array zval, so `value.arr` points to a live,
        // refcounted (not immutable) array; PHP runs this thread only, so
        // nothing else touches the count meanwhile.
        unsafe {
            let array = value.value.arr;
            (*array).gc.refcount += 1;
            Some(Self(array))
        }
    }
}

impl Drop for Pinned {
    fn drop(&mut self) {
        // SAFETY: `new` counted a reference on this array, so it is still
        // alive here. If PHP code dropped every other one meanwhile, ours is
        // the last and the array is freed as PHP frees one (`zval_ptr_dtor`
        // ends in `zend_array_destroy`).
        unsafe {
            (*self.0).gc.refcount -= 1;
            if (*self.0).gc.refcount == 0 {
                zend_array_destroy(self.0);
            }
        }
    }
}

/// Copies PHP rows into one batch. Any bad row rejects the whole batch,
/// with a message naming the row's index, the column and the PHP type.
pub fn batch<'a>(
    rows: impl Iterator<Item = &'a Zval>,
    columns: &[Column],
    batch: &mut RecordBatch,
    zone: &ExportZone,
) -> Result<(), ExportError> {
    for (index, row) in rows.enumerate() {
        let _pinned = Pinned::new(row);
        let row = row.dereference();
        let Some(cells) = row.array() else {
            return Err(ExportError::invalid_row(format!(
                "row {index}: expected an array (got {})",
                debug_type(row)
            )));
        };
        // A list row holds its cells by position: read in place when PHP
        // packed it, else by key 0, 1, … (keys out of order, say). A row
        // whose first key is text is read by key even with a key 0:
        // PDO's default FETCH_BOTH rows hold each value by name and number.
        let packed = list_values(cells);
        let buckets = buckets(cells);
        // Integer keys only, as in a packed list: `[0 => 'x', 'b' => 'y']`
        // is read by key. The lookup is left for last: it is a call into
        // PHP, 43 instructions per row that a packed row does not need.
        let list = packed.is_some()
            || cells.is_empty()
            || (integer_keys(cells, buckets) && cells.get_index(0).is_some());
        if list {
            let len = packed.map_or_else(|| cells.len(), <[Zval]>::len);
            if len != columns.len() {
                return Err(ExportError::invalid_row(format!(
                    "row {index}: has {len} cells, expected {}",
                    columns.len()
                )));
            }
            if let Some(values) = packed {
                for (zv, column) in values.iter().zip(columns) {
                    let zv = zv.dereference();
                    push(batch, zv, column, zone).map_err(|f| cell_error(index, column, zv, f))?;
                }
            } else {
                for (position, column) in columns.iter().enumerate() {
                    let Some(zv) = cells.get_index(position as i64) else {
                        return Err(ExportError::invalid_row(format!(
                            "row {index}: a list row needs keys 0 to {}, key {position} is missing",
                            columns.len() - 1
                        )));
                    };
                    let zv = zv.dereference();
                    push(batch, zv, column, zone).map_err(|f| cell_error(index, column, zv, f))?;
                }
            }
        } else {
            let mut next = 0;
            for column in columns {
                let key = column.lookup_key();
                let in_order = buckets.get(next).and_then(|b| keyed_value(b, key));
                let Some(zv) = in_order.or_else(|| cells.get(key)) else {
                    let why = if cells.has_numerical_keys() {
                        ": the row was read by key, as its integer keys do not start at 0"
                    } else {
                        ""
                    };
                    return Err(ExportError::invalid_row(format!(
                        "row {index}, column \"{}\": missing key \"{key}\"{why}",
                        column.name
                    )));
                };
                // Where a lookup found it (`val` is a bucket's first field),
                // the next column's key is looked for after it.
                next = (std::ptr::from_ref(zv) as usize).wrapping_sub(buckets.as_ptr() as usize)
                    / std::mem::size_of::<Bucket>()
                    + 1;
                let zv = zv.dereference();
                push(batch, zv, column, zone).map_err(|f| cell_error(index, column, zv, f))?;
            }
        }
        batch.end_row();
    }
    Ok(())
}
