//! Settings (`fluxo.*` keys from php.ini or a config file, overridden by
//! `FLUXO_*` environment variables) and the per-export options on top.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{ExportError, Result};
use crate::schema::{Column, ColumnType};
use crate::writer::csv::CsvOptions;
use crate::writer::{xlsx, Format};

/// Every `fluxo.*` key: (name, default, meaning). `config.example.ini` documents each.
pub const KEYS: &[(&str, &str, &str)] = &[
    ("format", "csv", "default format: csv or xlsx"),
    ("storage", "local", "where files go: local"),
    (
        "local_dir",
        "",
        "folder for finished files; empty: {temp}/fluxo/exports",
    ),
    (
        "work_dir",
        "",
        "spool and status files; empty: {temp}/fluxo/work",
    ),
    ("key_prefix", "", "folder prefix inside local_dir"),
    (
        "max_concurrent_tasks",
        "4",
        "exports running at once on this host",
    ),
    (
        "buffer_size",
        "8388608",
        "bytes of rows queued between producer and writer",
    ),
    ("queue_timeout", "300", "seconds an export may wait QUEUED"),
    (
        "shutdown_timeout",
        "300",
        "seconds a process waits at exit for running exports",
    ),
    ("compression_level", "6", "XLSX deflate level 1-9"),
    ("log_level", "warn", "off, error, warn, info, debug"),
    ("log_file", "", "JSON log file; empty: stderr"),
];

/// Effective settings of a process.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    pub format: Format,
    pub local_dir: PathBuf,
    pub work_dir: PathBuf,
    pub key_prefix: String,
    pub max_concurrent_tasks: usize,
    pub buffer_size: usize,
    pub queue_timeout: Duration,
    pub shutdown_timeout: Duration,
    pub compression_level: u8,
    pub log_level: String,
    pub log_file: Option<PathBuf>,
}

impl Default for Settings {
    fn default() -> Self {
        Self::resolve(|_| None).expect("the built-in defaults are valid")
    }
}

impl Settings {
    /// Builds settings from a source of `fluxo.*` values (`lookup("local_dir")`),
    /// each overridden by its `FLUXO_<KEY>` environment variable.
    pub fn resolve(lookup: impl Fn(&str) -> Option<String>) -> Result<Self> {
        Self::resolve_with_env(lookup, |name| std::env::var(name).ok())
    }

    pub fn resolve_with_env(
        lookup: impl Fn(&str) -> Option<String>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self> {
        let get = |key: &str| -> String {
            env(&format!("FLUXO_{}", key.to_ascii_uppercase()))
                .or_else(|| lookup(key))
                .unwrap_or_else(|| default_of(key).to_owned())
        };
        let temp = std::env::temp_dir().join("fluxo");
        let dir = |key: &str, fallback: &str| {
            let v = get(key);
            if v.is_empty() {
                temp.join(fallback)
            } else {
                absolute(Path::new(&v))
            }
        };
        let storage = get("storage");
        if storage != "local" {
            return Err(unsupported_storage("fluxo.storage", &storage));
        }
        let log_file = get("log_file");
        Ok(Self {
            format: Format::parse(&get("format"))
                .ok_or_else(|| ExportError::invalid_option("fluxo.format must be csv or xlsx"))?,
            local_dir: dir("local_dir", "exports"),
            work_dir: dir("work_dir", "work"),
            key_prefix: get("key_prefix").trim_matches('/').to_owned(),
            max_concurrent_tasks: number(
                &get("max_concurrent_tasks"),
                "max_concurrent_tasks",
                1,
                4096,
            )?,
            buffer_size: number(&get("buffer_size"), "buffer_size", 65_536, 1 << 34)?,
            queue_timeout: Duration::from_secs(number(
                &get("queue_timeout"),
                "queue_timeout",
                0,
                86_400,
            )? as u64),
            shutdown_timeout: Duration::from_secs(number(
                &get("shutdown_timeout"),
                "shutdown_timeout",
                0,
                86_400,
            )? as u64),
            compression_level: number(&get("compression_level"), "compression_level", 1, 9)? as u8,
            log_level: get("log_level"),
            log_file: (!log_file.is_empty()).then(|| absolute(Path::new(&log_file))),
        })
    }

    /// `(key, effective value)` for display (`php --ri fluxo`).
    pub fn describe(&self) -> Vec<(&'static str, String)> {
        vec![
            ("format", self.format.extension().to_owned()),
            ("storage", "local".to_owned()),
            ("local_dir", self.local_dir.display().to_string()),
            ("work_dir", self.work_dir.display().to_string()),
            ("key_prefix", self.key_prefix.clone()),
            (
                "max_concurrent_tasks",
                self.max_concurrent_tasks.to_string(),
            ),
            ("buffer_size", self.buffer_size.to_string()),
            ("queue_timeout", self.queue_timeout.as_secs().to_string()),
            (
                "shutdown_timeout",
                self.shutdown_timeout.as_secs().to_string(),
            ),
            ("compression_level", self.compression_level.to_string()),
            ("log_level", self.log_level.clone()),
            (
                "log_file",
                self.log_file
                    .as_ref()
                    .map_or("stderr".into(), |p| p.display().to_string()),
            ),
        ]
    }
}

fn default_of(key: &str) -> &'static str {
    KEYS.iter()
        .find(|(k, ..)| *k == key)
        .map(|(_, d, _)| *d)
        .expect("every key read is in KEYS")
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

fn number(value: &str, key: &str, min: usize, max: usize) -> Result<usize> {
    match value.trim().parse::<usize>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(ExportError::invalid_option(format!(
            "fluxo.{key} must be a whole number from {min} to {max}, not \"{value}\""
        ))),
    }
}

fn unsupported_storage(key: &str, name: &str) -> ExportError {
    ExportError::invalid_option(format!(
        "{key}: storage \"{name}\" is not available in this build; use \"local\""
    ))
}

/// An option as a front end received it (a PHP array, gRPC metadata).
#[derive(Clone, Debug, PartialEq)]
pub enum OptionValue {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    List(Vec<OptionValue>),
    Map(Vec<(String, OptionValue)>),
    /// A value no option takes (an object, a resource).
    Other,
}

impl OptionValue {
    /// The type name as PHP's `get_debug_type()` spells it.
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::Null => "null",
            Self::Bool(_) => "bool",
            Self::Int(_) => "int",
            Self::Float(_) => "float",
            Self::Str(_) => "string",
            Self::List(_) | Self::Map(_) => "array",
            Self::Other => "object",
        }
    }
}

/// What one export writes, checked and complete.
#[derive(Clone, Debug, PartialEq)]
pub struct ExportSpec {
    pub format: Format,
    pub filename: String,
    pub sheet: String,
    pub columns: Vec<Column>,
    pub total_rows: Option<u64>,
    pub csv: CsvOptions,
    pub local_dir: Option<PathBuf>,
}

const EXPORT_OPTIONS: &[&str] = &[
    "format",
    "filename",
    "sheet",
    "columns",
    "total_rows",
    "storage",
    "local_dir",
    "csv",
];
const COLUMN_OPTIONS: &[&str] = &["name", "type", "key", "format"];
const CSV_OPTIONS: &[&str] = &[
    "delimiter",
    "enclosure",
    "bom",
    "header",
    "line_ending",
    "encoding",
    "null",
    "true",
    "false",
];

fn bad(key: &str, expected: &str, got: &OptionValue) -> ExportError {
    ExportError::invalid_option(format!(
        "option \"{key}\" must be {expected}, got {}",
        got.type_name()
    ))
}

fn check_keys(map: &[(String, OptionValue)], valid: &[&str], what: &str) -> Result<()> {
    match map.iter().find(|(k, _)| !valid.contains(&k.as_str())) {
        Some((k, _)) => Err(ExportError::invalid_option(format!(
            "unknown {what} \"{k}\"; valid: {}",
            valid.join(", ")
        ))),
        None => Ok(()),
    }
}

fn string<'a>(key: &str, v: &'a OptionValue) -> Result<&'a str> {
    match v {
        OptionValue::Str(s) => Ok(s),
        other => Err(bad(key, "a string", other)),
    }
}

fn boolean(key: &str, v: &OptionValue) -> Result<bool> {
    match v {
        OptionValue::Bool(b) => Ok(*b),
        other => Err(bad(key, "a bool", other)),
    }
}

fn single_byte(key: &str, v: &OptionValue) -> Result<u8> {
    match string(key, v)?.as_bytes() {
        [b] if b.is_ascii() && *b != b'\r' && *b != b'\n' => Ok(*b),
        _ => Err(ExportError::invalid_option(format!(
            "option \"{key}\" must be one ASCII character other than CR or LF"
        ))),
    }
}

impl ExportSpec {
    /// Checks the options of one export (the `new Fluxo\Exporter([...])` array).
    pub fn from_options(options: &OptionValue, settings: &Settings) -> Result<Self> {
        let map = match options {
            OptionValue::Map(m) => m.as_slice(),
            OptionValue::List(l) if l.is_empty() => &[],
            other => return Err(bad("options", "an array with string keys", other)),
        };
        check_keys(map, EXPORT_OPTIONS, "option")?;
        let get = |k: &str| map.iter().find(|(key, _)| key == k).map(|(_, v)| v);

        let format = match get("format") {
            None => settings.format,
            Some(v) => Format::parse(string("format", v)?).ok_or_else(|| {
                ExportError::invalid_option("option \"format\" must be \"csv\" or \"xlsx\"")
            })?,
        };
        if let Some(v) = get("storage") {
            let name = string("storage", v)?;
            if name != "local" {
                return Err(unsupported_storage("option \"storage\"", name));
            }
        }
        let filename = match get("filename") {
            Some(v) => sanitize_filename(string("filename", v)?, format),
            None => String::new(),
        };
        let sheet = match get("sheet") {
            Some(v) => xlsx::validate_sheet_name(string("sheet", v)?)?.to_owned(),
            None => "Sheet1".to_owned(),
        };
        let total_rows = match get("total_rows") {
            None | Some(OptionValue::Null) => None,
            Some(OptionValue::Int(n)) if *n >= 0 => Some(*n as u64),
            Some(OptionValue::Int(n)) => {
                return Err(ExportError::invalid_option(format!(
                    "option \"total_rows\" must not be negative, got {n}"
                )))
            }
            Some(other) => return Err(bad("total_rows", "an int", other)),
        };
        let columns = match get("columns") {
            Some(v) => parse_columns(v)?,
            None => {
                return Err(ExportError::invalid_option(
                    "option \"columns\" is required: a list of column names or definitions",
                ))
            }
        };
        let csv = match get("csv") {
            Some(v) => parse_csv(v)?,
            None => CsvOptions::default(),
        };
        let local_dir = match get("local_dir") {
            Some(v) => Some(absolute(Path::new(string("local_dir", v)?))),
            None => None,
        };
        Ok(Self {
            format,
            filename,
            sheet,
            columns,
            total_rows,
            csv,
            local_dir,
        })
    }

    /// The filename, defaulting to `export-{task_id}.{ext}`.
    pub fn filename_for(&self, task_id: &str) -> String {
        if self.filename.is_empty() {
            format!("export-{task_id}.{}", self.format.extension())
        } else {
            self.filename.clone()
        }
    }
}

/// Parses a `columns` list: names, or maps with `name`, `type`, `key`, `format`.
pub fn parse_columns(v: &OptionValue) -> Result<Vec<Column>> {
    let list = match v {
        OptionValue::List(l) if !l.is_empty() => l,
        OptionValue::List(_) => {
            return Err(ExportError::invalid_option(
                "option \"columns\" must list at least one column",
            ))
        }
        other => return Err(bad("columns", "a list", other)),
    };
    list.iter()
        .enumerate()
        .map(|(i, c)| parse_column(i, c))
        .collect()
}

fn parse_column(index: usize, v: &OptionValue) -> Result<Column> {
    let at = |field: &str| format!("columns[{index}].{field}");
    let map = match v {
        OptionValue::Str(name) => return Ok(Column::new(name.clone(), ColumnType::Auto)),
        OptionValue::Map(m) => m,
        other => {
            return Err(bad(
                &format!("columns[{index}]"),
                "a string or an array",
                other,
            ))
        }
    };
    check_keys(map, COLUMN_OPTIONS, &format!("key in columns[{index}]"))?;
    let get = |k: &str| map.iter().find(|(key, _)| key == k).map(|(_, v)| v);
    let name = match get("name") {
        Some(v) => string(&at("name"), v)?.to_owned(),
        None => {
            return Err(ExportError::invalid_option(format!(
                "columns[{index}] needs a \"name\""
            )))
        }
    };
    let column_type = match get("type") {
        None => ColumnType::Auto,
        Some(v) => {
            let t = string(&at("type"), v)?;
            ColumnType::parse(t).ok_or_else(|| {
                ExportError::invalid_option(format!(
                    "{}: unknown type \"{t}\"; valid: {}",
                    at("type"),
                    ColumnType::NAMES
                ))
            })?
        }
    };
    let key = match get("key") {
        None | Some(OptionValue::Null) => None,
        Some(OptionValue::Int(i)) => Some(i.to_string()),
        Some(v) => Some(string(&at("key"), v)?.to_owned()),
    };
    let number_format = match get("format") {
        None | Some(OptionValue::Null) => None,
        Some(v) => Some(string(&at("format"), v)?.to_owned()),
    };
    Ok(Column {
        name,
        key,
        column_type,
        number_format,
    })
}

fn parse_csv(v: &OptionValue) -> Result<CsvOptions> {
    let OptionValue::Map(map) = v else {
        return Err(bad("csv", "an array", v));
    };
    check_keys(map, CSV_OPTIONS, "csv option")?;
    let mut csv = CsvOptions::default();
    for (key, value) in map {
        let at = format!("csv.{key}");
        match key.as_str() {
            "delimiter" => csv.delimiter = single_byte(&at, value)?,
            "enclosure" => csv.enclosure = single_byte(&at, value)?,
            "bom" => csv.bom = boolean(&at, value)?,
            "header" => csv.header = boolean(&at, value)?,
            "line_ending" => {
                csv.crlf = match string(&at, value)? {
                    "\n" => false,
                    "\r\n" => true,
                    _ => {
                        return Err(ExportError::invalid_option(
                            "option \"csv.line_ending\" must be \"\\n\" or \"\\r\\n\"",
                        ))
                    }
                }
            }
            "encoding" => {
                let enc = string(&at, value)?;
                if !enc.eq_ignore_ascii_case("utf-8") && !enc.eq_ignore_ascii_case("utf8") {
                    return Err(ExportError::invalid_option(format!(
                        "option \"csv.encoding\": \"{enc}\" is not supported; use \"UTF-8\""
                    )));
                }
            }
            "null" => csv.null_text = string(&at, value)?.to_owned(),
            "true" => csv.true_text = string(&at, value)?.to_owned(),
            "false" => csv.false_text = string(&at, value)?.to_owned(),
            _ => unreachable!("keys were checked"),
        }
    }
    if csv.delimiter == csv.enclosure {
        return Err(ExportError::invalid_option(
            "options \"csv.delimiter\" and \"csv.enclosure\" must differ",
        ));
    }
    Ok(csv)
}

/// Makes a download name safe: no directories, no control characters, no
/// leading dots, at most 200 bytes, and the format's extension.
pub fn sanitize_filename(name: &str, format: Format) -> String {
    let base = name.rsplit(['/', '\\']).next().unwrap_or("");
    let mut clean: String = base
        .chars()
        .filter(|c| !c.is_control())
        .collect::<String>()
        .trim()
        .trim_start_matches('.')
        .to_owned();
    let ext = format!(".{}", format.extension());
    if !clean.to_ascii_lowercase().ends_with(&ext) {
        clean.push_str(&ext);
    }
    if clean == ext {
        clean = format!("export{ext}");
    }
    if clean.len() > 200 {
        let mut cut = 200 - ext.len();
        while !clean.is_char_boundary(cut) {
            cut -= 1;
        }
        clean = format!("{}{ext}", &clean[..cut]);
    }
    clean
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: Vec<(&str, OptionValue)>) -> OptionValue {
        OptionValue::Map(pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
    }
    fn s(v: &str) -> OptionValue {
        OptionValue::Str(v.to_owned())
    }

    #[test]
    fn defaults_need_no_configuration() {
        let st = Settings::resolve_with_env(|_| None, |_| None).unwrap();
        assert_eq!(st.format, Format::Csv);
        assert!(st.local_dir.ends_with("fluxo/exports"));
        assert_eq!(st.compression_level, 6);
    }

    #[test]
    fn environment_overrides_ini() {
        let st = Settings::resolve_with_env(
            |k| (k == "max_concurrent_tasks").then(|| "3".into()),
            |k| (k == "FLUXO_LOCAL_DIR").then(|| "/srv/out".into()),
        )
        .unwrap();
        assert_eq!(st.max_concurrent_tasks, 3);
        assert_eq!(st.local_dir, PathBuf::from("/srv/out"));
    }

    #[test]
    fn bad_settings_name_the_key() {
        let err =
            Settings::resolve_with_env(|k| (k == "buffer_size").then(|| "lots".into()), |_| None)
                .unwrap_err();
        assert!(err.message.contains("fluxo.buffer_size"), "{err}");
    }

    #[test]
    fn options_are_checked() {
        let st = Settings::default();
        let ok = map(vec![
            ("format", s("xlsx")),
            ("filename", s("../../etc/orders")),
            (
                "columns",
                OptionValue::List(vec![
                    s("A"),
                    map(vec![
                        ("name", s("B")),
                        ("type", s("number")),
                        ("key", OptionValue::Int(7)),
                    ]),
                ]),
            ),
            ("total_rows", OptionValue::Int(10)),
        ]);
        let spec = ExportSpec::from_options(&ok, &st).unwrap();
        assert_eq!(spec.filename, "orders.xlsx");
        assert_eq!(spec.columns[1].column_type, ColumnType::Number);
        assert_eq!(spec.columns[1].lookup_key(), "7");

        let err = |o: OptionValue| ExportSpec::from_options(&o, &st).unwrap_err().message;
        assert!(
            err(map(vec![("colums", s("x"))])).contains("unknown option \"colums\"; valid: format")
        );
        assert!(
            err(map(vec![("columns", s("x"))])).contains("\"columns\" must be a list, got string")
        );
        assert!(err(map(vec![("columns", OptionValue::List(vec![]))])).contains("at least one"));
        assert!(err(map(vec![
            ("columns", OptionValue::List(vec![s("a")])),
            ("total_rows", OptionValue::Int(-1))
        ]))
        .contains("must not be negative"));
        assert!(err(map(vec![
            ("columns", OptionValue::List(vec![s("a")])),
            ("storage", s("oss"))
        ]))
        .contains("not available"));
        assert!(err(map(vec![(
            "columns",
            OptionValue::List(vec![map(vec![("name", s("a")), ("type", s("money"))])])
        )]))
        .contains("columns[0].type: unknown type \"money\""));
        assert!(err(map(vec![
            ("columns", OptionValue::List(vec![s("a")])),
            ("csv", map(vec![("delimiter", s(";;"))]))
        ]))
        .contains("csv.delimiter"));
    }

    #[test]
    fn filenames_are_sanitized() {
        assert_eq!(
            sanitize_filename("../../etc/passwd", Format::Csv),
            "passwd.csv"
        );
        assert_eq!(sanitize_filename("a\\b\0c.csv", Format::Csv), "bc.csv");
        assert_eq!(sanitize_filename("...", Format::Xlsx), "export.xlsx");
        assert_eq!(sanitize_filename("报表.CSV", Format::Csv), "报表.CSV");
        let long = sanitize_filename(&"é".repeat(300), Format::Csv);
        assert!(long.len() <= 200 && long.ends_with(".csv"));
    }
}

#[cfg(test)]
mod example_file_tests {
    #[test]
    fn config_example_documents_every_key_with_its_default() {
        let example = include_str!("../config.example.ini");
        for (key, default, _) in super::KEYS {
            let line = format!("fluxo.{key} = {default}");
            assert!(
                example.lines().any(|l| l.trim_end() == line.trim_end()),
                "config.example.ini lacks `{line}`"
            );
        }
    }
}
