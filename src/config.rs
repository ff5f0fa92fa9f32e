//! Settings (`fluxo.*` keys from php.ini or a config file, overridden by
//! `FLUXO_*` environment variables) and the per-export options on top.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{ExportError, Result};
use crate::schema::{self, Column, ColumnType, ColumnWidth, TextLimit};
use crate::writer::csv::{CsvEncoding, CsvOptions};
use crate::writer::xlsx::{self, Properties, XlsxOptions};
use crate::writer::Format;

/// Every `fluxo.*` key: (name, default, meaning). `config.example.ini` documents each.
pub const KEYS: &[(&str, &str, &str)] = &[
    ("format", "csv", "default format: csv or xlsx"),
    ("storage", "local", "where files go: local, oss or s3"),
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
    (
        "status_retention",
        "604800",
        "seconds a finished task's status is kept; 0: forever",
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
    ("compression_level", "2", "XLSX deflate level 1-9"),
    (
        "workers",
        "0",
        "threads each XLSX export deflates on; 0: one per core, at most 4",
    ),
    (
        "oss_endpoint",
        "",
        "OSS endpoint, e.g. https://oss-cn-hangzhou.aliyuncs.com",
    ),
    ("oss_bucket", "", "OSS bucket"),
    (
        "oss_region",
        "",
        "OSS region, e.g. cn-hangzhou; gives the endpoint when none is set",
    ),
    ("oss_access_key_id", "", "OSS AccessKey ID"),
    ("oss_access_key_secret", "", "OSS AccessKey secret"),
    ("oss_security_token", "", "STS security token"),
    (
        "oss_download_domain",
        "",
        "host for signed URLs instead of the endpoint",
    ),
    (
        "s3_endpoint",
        "",
        "S3 endpoint, e.g. https://s3.us-east-1.amazonaws.com",
    ),
    ("s3_bucket", "", "S3 bucket"),
    ("s3_region", "us-east-1", "S3 region"),
    ("s3_access_key_id", "", "S3 access key id"),
    ("s3_secret_access_key", "", "S3 secret access key"),
    ("s3_session_token", "", "S3 session token"),
    (
        "s3_virtual_host",
        "0",
        "1: virtual-host style URLs; 0: path style",
    ),
    ("part_size", "8388608", "multipart part size in bytes"),
    ("parallel_parts", "4", "parts uploaded at once"),
    (
        "max_retries",
        "3",
        "retries of a failed request, with back-off",
    ),
    ("upload_timeout", "600", "seconds the whole upload may take"),
    (
        "url_expires",
        "3600",
        "seconds a signed download URL is valid",
    ),
    ("keep_local", "0", "1: keep a local copy after upload"),
    (
        "temp_retention",
        "3600",
        "seconds a failed upload's spool file is kept",
    ),
    ("log_level", "warn", "off, error, warn, info, debug, trace"),
    ("log_file", "", "log file; empty: stderr"),
    ("log_format", "json", "log lines: json or text"),
    // fluxo-export-server and Fluxo\Server (see ServerSettings)
    ("grpc_listen", "0.0.0.0:9090", "gRPC address"),
    (
        "status_listen",
        "0.0.0.0:9091",
        "HTTP status API and downloads address",
    ),
    (
        "metrics_listen",
        "0.0.0.0:8080",
        "HTTP health and metrics address",
    ),
    (
        "auth_token",
        "",
        "bearer token for gRPC and the status API; empty: none",
    ),
    (
        "tls_cert",
        "",
        "PEM certificate file for gRPC TLS; empty: plaintext",
    ),
    ("tls_key", "", "PEM private key file for gRPC TLS"),
    (
        "idempotency_ttl",
        "3600",
        "seconds a request_id maps to its task",
    ),
    (
        "task_queue_size",
        "100",
        "exports waiting QUEUED before RESOURCE_EXHAUSTED",
    ),
    (
        "max_message_size",
        "16777216",
        "largest gRPC message in bytes",
    ),
    (
        "stream_idle_timeout",
        "600",
        "seconds a StreamExport may send nothing before its export fails; 0: no limit",
    ),
    (
        "public_base_url",
        "",
        "base URL of the server for signed local downloads",
    ),
    (
        "download_secret",
        "",
        "HMAC secret signing local download URLs",
    ),
];

/// The environment variables read for a setting, first to last:
/// `FLUXO_<KEY>`, then the names other tools give it (`AWS_REGION`).
pub fn env_names(key: &str) -> Vec<String> {
    let aliases = ENV_ALIASES
        .iter()
        .find(|(k, _)| *k == key)
        .map_or(&[][..], |(_, a)| a);
    std::iter::once(format!("FLUXO_{}", key.to_ascii_uppercase()))
        .chain(aliases.iter().map(|a| (*a).to_owned()))
        .collect()
}

/// Other names the environment may use for a key (below `FLUXO_<KEY>`).
const ENV_ALIASES: &[(&str, &[&str])] = &[
    ("oss_endpoint", &["OSS_ENDPOINT"]),
    ("oss_bucket", &["OSS_BUCKET"]),
    ("oss_region", &["OSS_REGION"]),
    ("oss_access_key_id", &["OSS_ACCESS_KEY_ID"]),
    ("oss_access_key_secret", &["OSS_ACCESS_KEY_SECRET"]),
    ("oss_security_token", &["OSS_SECURITY_TOKEN"]),
    ("s3_endpoint", &["S3_ENDPOINT", "AWS_ENDPOINT_URL"]),
    ("s3_bucket", &["S3_BUCKET"]),
    (
        "s3_region",
        &["S3_REGION", "AWS_REGION", "AWS_DEFAULT_REGION"],
    ),
    ("s3_access_key_id", &["AWS_ACCESS_KEY_ID"]),
    ("s3_secret_access_key", &["AWS_SECRET_ACCESS_KEY"]),
    ("s3_session_token", &["AWS_SESSION_TOKEN"]),
];

/// A credential: shown as `***` by `Debug` and in `describe()`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn masked(&self) -> String {
        if self.0.is_empty() {
            String::new()
        } else {
            "***".into()
        }
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Self(value.to_owned())
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.masked())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StorageKind {
    Local,
    Oss,
    S3,
}

impl StorageKind {
    pub fn parse(name: &str) -> Option<Self> {
        match name.to_ascii_lowercase().as_str() {
            "local" => Some(Self::Local),
            "oss" => Some(Self::Oss),
            "s3" => Some(Self::S3),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Local => "local",
            Self::Oss => "oss",
            Self::S3 => "s3",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Default)]
pub struct OssSettings {
    pub endpoint: String,
    pub bucket: String,
    pub region: String,
    pub access_key_id: String,
    pub access_key_secret: Secret,
    pub security_token: Secret,
    pub download_domain: String,
}

#[derive(Clone, Debug, PartialEq, Default)]
pub struct S3Settings {
    pub endpoint: String,
    pub bucket: String,
    pub region: String,
    pub access_key_id: String,
    pub secret_access_key: Secret,
    pub session_token: Secret,
    pub virtual_host: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub struct UploadSettings {
    pub part_size: usize,
    pub parallel_parts: usize,
    pub max_retries: usize,
    pub timeout: Duration,
    pub url_expires: Duration,
    pub keep_local: bool,
    pub temp_retention: Duration,
}

/// Effective settings of a process.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    pub storage: StorageKind,
    pub oss: OssSettings,
    pub s3: S3Settings,
    pub upload: UploadSettings,
    pub format: Format,
    pub local_dir: PathBuf,
    pub work_dir: PathBuf,
    /// How long a finished task's status file is kept; zero: for ever.
    pub status_retention: Duration,
    pub key_prefix: String,
    pub max_concurrent_tasks: usize,
    pub buffer_size: usize,
    pub queue_timeout: Duration,
    pub shutdown_timeout: Duration,
    pub compression_level: u8,
    /// Threads each XLSX export deflates its sheets on (`fluxo.workers`;
    /// 0 in the ini: one per core, at most 4).
    pub workers: usize,
    pub log_level: String,
    pub log_file: Option<PathBuf>,
    /// Server keys (`grpc_listen`, `auth_token`, ...).
    pub server: ServerSettings,
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

    /// As [`Settings::resolve`], with `given` (options passed in code, as to
    /// `Fluxo\Server::start()`) above the environment.
    pub fn resolve_given(
        given: impl Fn(&str) -> Option<String>,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Self> {
        Self::resolve_layers(given, |name| std::env::var(name).ok(), lookup)
    }

    pub fn resolve_with_env(
        lookup: impl Fn(&str) -> Option<String>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self> {
        Self::resolve_layers(|_| None, env, lookup)
    }

    /// Each key from `given`, else the environment, else `lookup`, else its
    /// default. An empty environment variable counts as unset: a deployment
    /// that passes `FLUXO_AUTH_TOKEN: ${TOKEN}` with `TOKEN` unset must not
    /// blank the configured token (and turn authentication off).
    fn resolve_layers(
        given: impl Fn(&str) -> Option<String>,
        env: impl Fn(&str) -> Option<String>,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Self> {
        // (key, variable) of each value the environment gave, for errors.
        let from_env = std::cell::RefCell::new(Vec::new());
        let get = |key: &str| -> String {
            given(key)
                .or_else(|| {
                    env_names(key).into_iter().find_map(|name| {
                        let value = env(&name).filter(|v| !v.is_empty())?;
                        from_env.borrow_mut().push((key.to_owned(), name));
                        Some(value)
                    })
                })
                .or_else(|| lookup(key))
                .unwrap_or_else(|| default_of(key).to_owned())
        };
        Self::from_values(&get).map_err(|mut e| {
            // The message names the ini key; one set in the environment is
            // looked for in php.ini in vain.
            let set_by = from_env
                .borrow()
                .iter()
                .find(|(key, _)| names_key(&e.message, key))
                .map(|(_, variable)| variable.clone());
            if let Some(variable) = set_by {
                e.message
                    .push_str(&format!(" (set by the environment variable {variable})"));
            }
            e
        })
    }

    /// The settings from each key's value.
    fn from_values(get: &impl Fn(&str) -> String) -> Result<Self> {
        let secs = |key: &str, min: usize, max: usize| -> Result<Duration> {
            Ok(Duration::from_secs(number(&get(key), key, min, max)? as u64))
        };
        let flag = |key: &str| -> Result<bool> {
            match get(key).trim().to_ascii_lowercase().as_str() {
                "1" | "on" | "true" | "yes" => Ok(true),
                "0" | "off" | "false" | "no" | "" => Ok(false),
                other => Err(ExportError::invalid_option(format!(
                    "fluxo.{key} must be 0 or 1, not \"{other}\""
                ))),
            }
        };
        let temp = std::env::temp_dir().join("fluxo");
        let dir = |key: &str, fallback: &str| {
            let v = get(key);
            if v.is_empty() {
                Ok(temp.join(fallback))
            } else {
                absolute_dir(&format!("fluxo.{key}"), &v)
            }
        };
        let storage = get("storage");
        let storage = StorageKind::parse(&storage)
            .ok_or_else(|| unsupported_storage("fluxo.storage", &storage))?;
        let log_file = get("log_file");
        Ok(Self {
            storage,
            oss: OssSettings {
                endpoint: get("oss_endpoint"),
                bucket: get("oss_bucket"),
                region: get("oss_region"),
                access_key_id: get("oss_access_key_id"),
                access_key_secret: Secret(get("oss_access_key_secret")),
                security_token: Secret(get("oss_security_token")),
                download_domain: get("oss_download_domain"),
            },
            s3: S3Settings {
                endpoint: get("s3_endpoint"),
                bucket: get("s3_bucket"),
                region: get("s3_region"),
                access_key_id: get("s3_access_key_id"),
                secret_access_key: Secret(get("s3_secret_access_key")),
                session_token: Secret(get("s3_session_token")),
                virtual_host: flag("s3_virtual_host")?,
            },
            upload: UploadSettings {
                part_size: bytes(&get("part_size"), "part_size", 102_400, 5 << 30)?,
                parallel_parts: number(&get("parallel_parts"), "parallel_parts", 1, 64)?,
                max_retries: number(&get("max_retries"), "max_retries", 0, 20)?,
                timeout: secs("upload_timeout", 1, 86_400)?,
                url_expires: secs("url_expires", 1, 604_800)?,
                keep_local: flag("keep_local")?,
                temp_retention: secs("temp_retention", 0, 30 * 86_400)?,
            },
            format: {
                let format = get("format");
                Format::parse(&format).ok_or_else(|| {
                    ExportError::invalid_option(format!(
                        "fluxo.format must be csv or xlsx, not \"{format}\""
                    ))
                })?
            },
            local_dir: dir("local_dir", "exports")?,
            work_dir: dir("work_dir", "work")?,
            status_retention: secs("status_retention", 0, 10 * 365 * 86_400)?,
            key_prefix: key_prefix(&get("key_prefix"))?,
            max_concurrent_tasks: number(
                &get("max_concurrent_tasks"),
                "max_concurrent_tasks",
                1,
                4096,
            )?,
            buffer_size: bytes(&get("buffer_size"), "buffer_size", 65_536, 1 << 34)?,
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
            workers: match number(&get("workers"), "workers", 0, 64)? {
                0 => crate::writer::xlsx::default_deflate_threads(),
                n => n,
            },
            log_level: log_level(&get("log_level"))?,
            log_file: (!log_file.is_empty()).then(|| absolute(Path::new(&log_file))),
            server: ServerSettings::from_keys(get)?,
        })
    }

    /// `(key, effective value)` for display (`php --ri fluxo`).
    pub fn describe(&self) -> Vec<(&'static str, String)> {
        let mut rows = vec![
            ("format", self.format.extension().to_owned()),
            ("storage", self.storage.name().to_owned()),
            ("local_dir", self.local_dir.display().to_string()),
            ("work_dir", self.work_dir.display().to_string()),
            (
                "status_retention",
                self.status_retention.as_secs().to_string(),
            ),
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
            ("workers", self.workers.to_string()),
            ("log_level", self.log_level.clone()),
            (
                "log_file",
                self.log_file
                    .as_ref()
                    .map_or(String::new(), |p| p.display().to_string()),
            ),
            ("oss_endpoint", self.oss.endpoint.clone()),
            ("oss_bucket", self.oss.bucket.clone()),
            ("oss_region", self.oss.region.clone()),
            ("oss_access_key_id", self.oss.access_key_id.clone()),
            ("oss_access_key_secret", self.oss.access_key_secret.masked()),
            ("oss_security_token", self.oss.security_token.masked()),
            ("oss_download_domain", self.oss.download_domain.clone()),
            ("s3_endpoint", self.s3.endpoint.clone()),
            ("s3_bucket", self.s3.bucket.clone()),
            ("s3_region", self.s3.region.clone()),
            ("s3_access_key_id", self.s3.access_key_id.clone()),
            ("s3_secret_access_key", self.s3.secret_access_key.masked()),
            ("s3_session_token", self.s3.session_token.masked()),
            (
                "s3_virtual_host",
                u8::from(self.s3.virtual_host).to_string(),
            ),
        ];
        let u = &self.upload;
        rows.extend([
            ("part_size", u.part_size.to_string()),
            ("parallel_parts", u.parallel_parts.to_string()),
            ("max_retries", u.max_retries.to_string()),
            ("upload_timeout", u.timeout.as_secs().to_string()),
            ("url_expires", u.url_expires.as_secs().to_string()),
            ("keep_local", u8::from(u.keep_local).to_string()),
            ("temp_retention", u.temp_retention.as_secs().to_string()),
        ]);
        rows.extend(self.server.describe());
        rows
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

/// A folder setting, which must be an absolute path: a relative one would
/// depend on the working directory, and PHP-FPM makes that each script's
/// own folder. Exports went into the web root, and `Exporter::status()`
/// from a script in another folder found nothing.
fn absolute_dir(name: &str, value: &str) -> Result<PathBuf> {
    let path = Path::new(value);
    if !path.is_absolute() {
        return Err(ExportError::invalid_option(format!(
            "{name} must be an absolute path, not \"{value}\": a relative one would \
             depend on the working directory, which PHP-FPM sets to each script's folder"
        )));
    }
    Ok(absolute(path))
}

/// Whether `message` names `fluxo.{key}` (and not a longer key).
fn names_key(message: &str, key: &str) -> bool {
    let name = format!("fluxo.{key}");
    message.match_indices(&name).any(|(at, _)| {
        !message[at + name.len()..].starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
    })
}

fn number(value: &str, key: &str, min: usize, max: usize) -> Result<usize> {
    match value.trim().parse::<usize>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(ExportError::invalid_option(format!(
            "fluxo.{key} must be a whole number from {min} to {max}, not \"{value}\""
        ))),
    }
}

/// A size in bytes, in php.ini's shorthand too: `5M` is 5 MiB, as for
/// `upload_max_filesize` (`K`, `M`, `G`, either case, powers of 1024).
fn bytes(value: &str, key: &str, min: usize, max: usize) -> Result<usize> {
    let text = value.trim();
    let (digits, unit) = match text.char_indices().last() {
        Some((at, c)) if c.is_ascii_alphabetic() => (&text[..at], c.to_ascii_uppercase()),
        _ => (text, 'B'),
    };
    let scale: usize = match unit {
        'B' => 1,
        'K' => 1 << 10,
        'M' => 1 << 20,
        'G' => 1 << 30,
        _ => 0,
    };
    match digits.trim().parse::<usize>() {
        Ok(n) if (min..=max).contains(&n.saturating_mul(scale)) => Ok(n * scale),
        _ => Err(ExportError::invalid_option(format!(
            "fluxo.{key} must be a size from {min} to {max} bytes (or with K, M or G: 8M), not \"{value}\""
        ))),
    }
}

/// `fluxo.log_level`, lower-cased. Empty is `off`: PHP's ini parser reads
/// a bare `off` (or `none`, `no`, `false`) as the empty string.
fn log_level(value: &str) -> Result<String> {
    let level = value.trim().to_ascii_lowercase();
    match level.as_str() {
        "" => Ok("off".to_owned()),
        "off" | "error" | "warn" | "info" | "debug" | "trace" => Ok(level),
        _ => Err(ExportError::invalid_option(format!(
            "fluxo.log_level must be off, error, warn, info, debug or trace, not \"{value}\""
        ))),
    }
}

/// `fluxo.key_prefix`: folders below the storage root. A `.` or `..`
/// segment, a backslash or a control character could point outside it (a
/// filesystem-backed S3 server resolves keys as paths), so none is allowed.
fn key_prefix(value: &str) -> Result<String> {
    let prefix = value.trim_matches('/');
    let escapes = prefix.split('/').any(|s| s == "." || s == "..")
        || prefix.chars().any(|c| c == '\\' || c.is_control());
    if escapes {
        return Err(ExportError::invalid_option(format!(
            "fluxo.key_prefix \"{}\" must be folders below the storage root: no \".\" or \"..\" segment, backslash or control character",
            value.escape_debug()
        )));
    }
    // `a//b` would make an empty folder level in object keys.
    let folders: Vec<&str> = prefix.split('/').filter(|s| !s.is_empty()).collect();
    Ok(folders.join("/"))
}

fn unsupported_storage(key: &str, name: &str) -> ExportError {
    ExportError::invalid_option(format!(
        "{key}: unknown storage \"{name}\"; valid: local, oss, s3"
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
    /// Text that is not UTF-8: no option takes it.
    InvalidUtf8,
    /// A value no option takes (an object, a resource).
    Other,
}

impl OptionValue {
    /// The pairs of an array with string keys. PHP's empty array `[]` is one
    /// too: it reads as an empty list.
    pub fn as_map(&self) -> Option<&[(String, OptionValue)]> {
        match self {
            Self::Map(m) => Some(m),
            Self::List(l) if l.is_empty() => Some(&[]),
            _ => None,
        }
    }

    /// The type name as PHP's `get_debug_type()` spells it.
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::Null => "null",
            Self::Bool(_) => "bool",
            Self::Int(_) => "int",
            Self::Float(_) => "float",
            Self::Str(_) => "string",
            Self::List(_) | Self::Map(_) => "array",
            Self::InvalidUtf8 => "a string of invalid UTF-8",
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
    /// Where this export goes: the `storage` option, else `fluxo.storage`.
    pub storage: StorageKind,
    pub url_expires: Option<Duration>,
    pub xlsx: XlsxOptions,
    /// Invalid UTF-8 in a text cell becomes U+FFFD instead of an error.
    pub replace_invalid_utf8: bool,
    /// IANA zone (`Asia/Shanghai`) that date objects are shown in; the front
    /// end converts them (PHP: `DateTimeInterface::setTimezone`).
    pub timezone: Option<String>,
}

const EXPORT_OPTIONS: &[&str] = &[
    "format",
    "filename",
    "sheet",
    "columns",
    "total_rows",
    "storage",
    "local_dir",
    "url_expires",
    "csv",
    "autofilter",
    "properties",
    "long_text",
    "invalid_utf8",
    "timezone",
];
const PROPERTY_OPTIONS: &[&str] = &["title", "author", "company", "created"];
const COLUMN_OPTIONS: &[&str] = &["name", "type", "key", "format", "width", "hidden"];
const CSV_OPTIONS: &[&str] = &[
    "delimiter",
    "enclosure",
    "bom",
    "header",
    "line_ending",
    "encoding",
    "unencodable",
    "formula_guard",
    "excel_text",
    "decimal_separator",
    "null",
    "true",
    "false",
    "date_format",
    "datetime_format",
    "time_format",
    "compression",
];

fn bad(key: &str, expected: &str, got: &OptionValue) -> ExportError {
    let got = match got {
        OptionValue::List(_) => "a list",
        other => other.type_name(),
    };
    ExportError::invalid_option(format!("option \"{key}\" must be {expected}, got {got}"))
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

/// For a two-way choice: false for the first name, true for the second.
fn second_of(key: &str, v: &OptionValue, names: [&str; 2]) -> Result<bool> {
    match string(key, v)? {
        chosen if chosen == names[0] => Ok(false),
        chosen if chosen == names[1] => Ok(true),
        _ => Err(ExportError::invalid_option(format!(
            "option \"{key}\" must be \"{}\" or \"{}\"",
            names[0], names[1]
        ))),
    }
}

fn date_pattern(key: &str, v: &OptionValue) -> Result<crate::schema::DatePattern> {
    let pattern = string(key, v)?;
    // Empty, every date would be written as an empty field.
    if pattern.trim().is_empty() {
        return Err(ExportError::invalid_option(format!(
            "option \"{key}\" is empty: give a pattern of date() letters, such as Y-m-d H:i:s"
        )));
    }
    crate::schema::DatePattern::new(pattern).map_err(|letter| {
        ExportError::invalid_option(format!(
            "option \"{key}\": unknown date letter '{letter}' (use Y y m n d j H G h g i s A a u, \\ to escape)"
        ))
    })
}

/// An Excel number format, refused where it is surely broken: Excel would
/// call the whole file damaged and drop the styles of every cell to open it.
fn number_format<'a>(key: &str, format: &'a str) -> Result<&'a str> {
    let refused = |why: &str| {
        Err(ExportError::invalid_option(format!(
            "option \"{key}\" (\"{format}\"): {why}"
        )))
    };
    if format.trim().is_empty() {
        return refused("is empty; leave it out for Excel's General");
    }
    if format.chars().count() > 255 {
        return refused("is longer than the 255 characters Excel takes");
    }
    let (mut quoted, mut bracket, mut escaped, mut sections) = (false, false, false, 1);
    for c in format.chars() {
        match c {
            _ if escaped => escaped = false,
            '"' => quoted = !quoted,
            _ if quoted => {}
            // `\x` shows x, `_x` leaves its width, `*x` repeats it.
            '\\' | '_' | '*' => escaped = true,
            '[' if !bracket => bracket = true,
            ']' if bracket => bracket = false,
            ';' if !bracket => sections += 1,
            _ => {}
        }
    }
    if quoted {
        refused("a quoted text is not closed with \"")
    } else if bracket {
        refused("a [ is not closed with ]")
    } else if escaped {
        refused("it ends with a \\, _ or * with no character after it")
    } else if sections > 4 {
        refused("it has more than the 4 sections (separated by ;) Excel takes")
    } else {
        Ok(format)
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
    /// What this export's text cells must keep to, checked as they join a
    /// batch.
    pub fn text_limit(&self) -> Option<TextLimit> {
        match self.format {
            Format::Csv => self.csv.text_limit(),
            Format::Xlsx => self.xlsx.text_limit(),
        }
    }

    /// Checks the options of one export (the `new Fluxo\Exporter([...])` array).
    pub fn from_options(options: &OptionValue, settings: &Settings) -> Result<Self> {
        let map = options
            .as_map()
            .ok_or_else(|| bad("options", "an array with string keys", options))?;
        check_keys(map, EXPORT_OPTIONS, "option")?;
        let get = |k: &str| map.iter().find(|(key, _)| key == k).map(|(_, v)| v);

        let format = match get("format") {
            None => settings.format,
            Some(v) => Format::parse(string("format", v)?).ok_or_else(|| {
                ExportError::invalid_option("option \"format\" must be \"csv\" or \"xlsx\"")
            })?,
        };
        let storage = match get("storage") {
            None => settings.storage,
            Some(v) => {
                let name = string("storage", v)?;
                StorageKind::parse(name)
                    .ok_or_else(|| unsupported_storage("option \"storage\"", name))?
            }
        };
        let url_expires = match get("url_expires") {
            None | Some(OptionValue::Null) => None,
            Some(OptionValue::Int(n)) if (1..=604_800).contains(n) => {
                Some(Duration::from_secs(*n as u64))
            }
            Some(OptionValue::Int(n)) => {
                return Err(ExportError::invalid_option(format!(
                    "option \"url_expires\" must be 1 to 604800 seconds, got {n}"
                )))
            }
            Some(other) => return Err(bad("url_expires", "an int", other)),
        };
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
        if format == Format::Xlsx && columns.len() > xlsx::MAX_COLUMNS {
            return Err(ExportError::invalid_option(format!(
                "option \"columns\": an XLSX sheet holds at most 16,384 columns, not {}",
                columns.len()
            )));
        }
        let csv = match get("csv") {
            Some(v) => parse_csv(v)?,
            None => CsvOptions::default(),
        };
        // The header is written before any row: a name the encoding cannot
        // hold is refused here, not from whichever batch the writer reaches it.
        if let (Format::Csv, true, Some(limit)) = (format, csv.header, csv.text_limit()) {
            for (i, c) in columns.iter().enumerate() {
                limit.check(&c.name).map_err(|e| {
                    ExportError::invalid_option(format!("columns[{i}] \"{}\": {e}", c.name))
                })?;
            }
        }
        // Empty is unset, as for the ini key: a blank config value must not
        // put files in the working directory (a web root, under FPM).
        let local_dir = match get("local_dir") {
            Some(v) => Some(string("local_dir", v)?)
                .filter(|dir| !dir.trim().is_empty())
                .map(|dir| absolute_dir("option \"local_dir\"", dir))
                .transpose()?,
            None => None,
        };
        let choice = |key: &str, options: [&str; 2]| -> Result<bool> {
            get(key).map_or(Ok(false), |v| second_of(key, v, options))
        };
        let xlsx = XlsxOptions {
            autofilter: match get("autofilter") {
                None => false,
                Some(v) => boolean("autofilter", v)?,
            },
            truncate_long_text: choice("long_text", ["error", "truncate"])?,
            properties: match get("properties") {
                None => Properties::default(),
                Some(v) => parse_properties(v)?,
            },
            compression_level: settings.compression_level,
            deflate_threads: settings.workers,
        };
        let timezone = match get("timezone") {
            None | Some(OptionValue::Null) => None,
            Some(v) => Some(string("timezone", v)?.to_owned()),
        };
        Ok(Self {
            format,
            filename,
            sheet,
            columns,
            total_rows,
            csv,
            local_dir,
            storage,
            url_expires,
            xlsx,
            replace_invalid_utf8: choice("invalid_utf8", ["error", "replace"])?,
            timezone,
        })
    }

    fn gzip(&self) -> bool {
        self.format == Format::Csv && self.csv.gzip
    }

    /// The filename, defaulting to `export-{task_id}.{ext}`; `.gz` when gzipped.
    pub fn filename_for(&self, task_id: &str) -> String {
        let name = if self.filename.is_empty() {
            format!("export-{task_id}.{}", self.format.extension())
        } else {
            self.filename.clone()
        };
        if self.gzip() && !name.ends_with(".gz") {
            format!("{name}.gz")
        } else {
            name
        }
    }

    /// The stored file's media type.
    pub fn content_type(&self) -> &'static str {
        if self.gzip() {
            crate::writer::GZIP_MEDIA_TYPE
        } else {
            self.format.content_type(self.csv.encoding)
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
    let columns: Vec<Column> = list
        .iter()
        .enumerate()
        .map(|(i, c)| parse_column(i, c))
        .collect::<Result<_>>()?;
    // A header names one column: with two of a name, rows keyed by name
    // would fill both from one value, and readers pick either.
    let mut seen = std::collections::HashMap::new();
    for (i, c) in columns.iter().enumerate() {
        if let Some(first) = seen.insert(c.name.as_str(), i) {
            return Err(ExportError::invalid_option(format!(
                "columns[{i}]: the name \"{}\" is already used by columns[{first}]; column names must be unique",
                c.name
            )));
        }
    }
    Ok(columns)
}

/// A header is a cell: it holds no more characters than an Excel cell.
fn check_header_length(index: usize, name: &str) -> Result<()> {
    match TextLimit::Chars(xlsx::MAX_TEXT_CHARS).check(name) {
        Err(schema::CellError::TooManyChars { chars, max }) => Err(ExportError::invalid_option(format!(
            "columns[{index}]: the name is {chars} characters long as Excel counts them (an emoji is two); a header cell holds at most {max}"
        ))),
        _ => Ok(()),
    }
}

fn parse_column(index: usize, v: &OptionValue) -> Result<Column> {
    let at = |field: &str| format!("columns[{index}].{field}");
    let map = match v {
        OptionValue::Str(name) => {
            check_header_length(index, name)?;
            return Ok(Column::new(name.clone(), ColumnType::Auto));
        }
        other => other.as_map().ok_or_else(|| {
            bad(
                &format!("columns[{index}]"),
                "a string or an array with string keys",
                other,
            )
        })?,
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
    check_header_length(index, &name)?;
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
        // Empty: Excel's General, as over gRPC.
        Some(OptionValue::Str(f)) if f.is_empty() => None,
        Some(v) => Some(number_format(&at("format"), string(&at("format"), v)?)?.to_owned()),
    };
    let width = match get("width") {
        None | Some(OptionValue::Null) => None,
        Some(OptionValue::Str(a)) if a == "auto" => Some(ColumnWidth::Auto),
        Some(OptionValue::Int(n)) if (0..=255).contains(n) => Some(ColumnWidth::Chars(*n as f64)),
        Some(OptionValue::Float(f)) if (0.0..=255.0).contains(f) => Some(ColumnWidth::Chars(*f)),
        Some(_) => {
            return Err(ExportError::invalid_option(format!(
                "{} must be a number of characters from 0 to 255, or \"auto\"",
                at("width")
            )))
        }
    };
    let hidden = match get("hidden") {
        None => false,
        Some(v) => boolean(&at("hidden"), v)?,
    };
    Ok(Column {
        name,
        key,
        column_type,
        number_format,
        width,
        hidden,
    })
}

fn parse_properties(v: &OptionValue) -> Result<Properties> {
    let map = v
        .as_map()
        .ok_or_else(|| bad("properties", "an array with string keys", v))?;
    check_keys(map, PROPERTY_OPTIONS, "key in properties")?;
    let mut properties = Properties::default();
    for (key, value) in map {
        let at = format!("properties.{key}");
        let text = string(&at, value)?.to_owned();
        match key.as_str() {
            "title" => properties.title = Some(text),
            "author" => properties.author = Some(text),
            "company" => properties.company = Some(text),
            "created" => {
                properties.created = Some(crate::schema::parse_utc(&text).ok_or_else(|| {
                    ExportError::invalid_option(format!(
                        "option \"{at}\" must be a date (Y-m-d H:i:s, UTC, or ISO 8601)"
                    ))
                })?)
            }
            _ => unreachable!("keys were checked"),
        }
    }
    Ok(properties)
}

fn parse_csv(v: &OptionValue) -> Result<CsvOptions> {
    let map = v
        .as_map()
        .ok_or_else(|| bad("csv", "an array with string keys", v))?;
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
                let name = string(&at, value)?;
                csv.encoding = CsvEncoding::parse(name).ok_or_else(|| {
                    ExportError::invalid_option(format!(
                        "option \"csv.encoding\": unknown encoding \"{name}\"; valid: {}",
                        CsvEncoding::NAMES
                    ))
                })?;
            }
            "unencodable" => csv.replace_unencodable = second_of(&at, value, ["error", "replace"])?,
            "formula_guard" => csv.formula_guard = boolean(&at, value)?,
            "excel_text" => csv.excel_text = boolean(&at, value)?,
            "decimal_separator" => {
                csv.style.decimal_separator = match string(&at, value)? {
                    "." => b'.',
                    "," => b',',
                    other => {
                        return Err(ExportError::invalid_option(format!(
                            "option \"{at}\" must be \".\" or \",\", not \"{other}\""
                        )))
                    }
                }
            }
            "compression" => csv.gzip = second_of(&at, value, ["none", "gzip"])?,
            "null" => csv.null_text = string(&at, value)?.to_owned(),
            "true" => csv.style.true_text = string(&at, value)?.to_owned(),
            "false" => csv.style.false_text = string(&at, value)?.to_owned(),
            "date_format" => csv.style.date = date_pattern(&at, value)?,
            "datetime_format" => csv.style.datetime = date_pattern(&at, value)?,
            "time_format" => csv.style.time = date_pattern(&at, value)?,
            _ => unreachable!("keys were checked"),
        }
    }
    // Excel opens a UTF-16LE text file as tab-separated: a comma would
    // leave each row in one cell.
    if csv.encoding == CsvEncoding::Utf16Le && !map.iter().any(|(k, _)| k == "delimiter") {
        csv.delimiter = b'\t';
    }
    if csv.delimiter == csv.enclosure {
        return Err(ExportError::invalid_option(
            "options \"csv.delimiter\" and \"csv.enclosure\" must differ",
        ));
    }
    // These texts are written as they are into every file: a character the
    // encoding cannot hold is a mistake in the options, not in a cell.
    let style = &csv.style;
    let texts = [
        ("null", csv.null_text.as_str()),
        ("true", &style.true_text),
        ("false", &style.false_text),
        ("date_format", style.date.as_str()),
        ("datetime_format", style.datetime.as_str()),
        ("time_format", style.time.as_str()),
    ];
    let Some(encoding) = csv.encoding.partial() else {
        return Ok(csv);
    };
    for (key, text) in texts {
        if let Some(c) = schema::first_unencodable(encoding, text) {
            return Err(ExportError::invalid_option(format!(
                "option \"csv.{key}\": {}",
                schema::cannot_hold(encoding, c)
            )));
        }
    }
    Ok(csv)
}

/// Makes a download name safe: no directories, no control characters nor
/// the bidirectional ones that make `invoice\u{202E}fdp.csv` show as
/// `invoicevsc.pdf`, `_` for the characters Windows does not allow in a file
/// name (`<>:"|?*`, a browser would change them anyway), no leading or
/// trailing dots, at most 200 bytes, and the format's extension. Empty when
/// no name is left: the export's default name then applies, as without one.
pub fn sanitize_filename(name: &str, format: Format) -> String {
    let base = name.rsplit(['/', '\\']).next().unwrap_or("");
    let clean: String = base
        .chars()
        .filter(|&c| !c.is_control() && !is_bidi_control(c))
        .map(|c| if "<>:\"|?*".contains(c) { '_' } else { c })
        .collect();
    let ext = format!(".{}", format.extension());
    // The name without its extension: `orders.csv.gz` names the CSV (`.gz`
    // follows the compression option), and `.csv` alone names nothing.
    let mut stem = clean.trim();
    if format == Format::Csv && stem.to_ascii_lowercase().ends_with(".gz") {
        stem = &stem[..stem.len() - 3];
    }
    // As written (`报表.CSV`), when it has one.
    let ext = if stem.to_ascii_lowercase().ends_with(&ext) {
        let (name, written) = stem.split_at(stem.len() - ext.len());
        stem = name;
        written.to_owned()
    } else {
        ext
    };
    let stem = stem.trim().trim_matches('.').trim_end();
    if stem.is_empty() {
        return String::new();
    }
    let mut cut = stem.len().min(200 - ext.len());
    while !stem.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}{ext}", &stem[..cut])
}

/// The marks and embeddings that change the order a name is shown in.
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
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
        assert_eq!(st.compression_level, 2);
    }

    #[test]
    fn log_levels_are_checked_and_an_empty_one_is_off() {
        let level = |v: &'static str| {
            Settings::resolve_with_env(move |k| (k == "log_level").then(|| v.into()), |_| None)
                .map(|st| st.log_level)
        };
        assert_eq!(level("").unwrap(), "off", "php.ini's bare off");
        assert_eq!(level(" Info ").unwrap(), "info");
        assert_eq!(level("warn").unwrap(), "warn");
        let err = level("loud").unwrap_err();
        assert!(
            err.message.contains("fluxo.log_level must be off, error"),
            "{err}"
        );
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
    fn a_public_base_url_is_an_http_url_with_a_secret() {
        let resolve = |url: &'static str, secret: &'static str| {
            Settings::resolve_with_env(
                move |k| match k {
                    "public_base_url" => Some(url.into()),
                    "download_secret" => Some(secret.into()),
                    _ => None,
                },
                |_| None,
            )
        };
        let secret = "0123456789abcdef";
        let st = resolve("HTTPS://dl.example.com:9091/", secret).unwrap();
        assert_eq!(st.server.public_base_url, "HTTPS://dl.example.com:9091");
        assert!(
            resolve("", secret).is_ok(),
            "a secret alone verifies URLs signed elsewhere"
        );
        let err = resolve("", "0").unwrap_err();
        assert!(
            err.message.contains("at least 16 characters (it has 1)"),
            "{err}"
        );
        for bad in ["dl.example.com:9091", "not a url", "https://", "ftp://x"] {
            let err = resolve(bad, secret).unwrap_err();
            assert!(
                err.message.contains("fluxo.public_base_url must be"),
                "{bad}: {err}"
            );
        }
        let err = resolve("https://dl.example.com", "").unwrap_err();
        assert!(err.message.contains("needs fluxo.download_secret"), "{err}");
    }

    #[test]
    fn sizes_take_php_shorthand() {
        let size = |v: &str| bytes(v, "part_size", 102_400, 5 << 30);
        assert_eq!(size("8388608").unwrap(), 8 << 20);
        assert_eq!(size("8M").unwrap(), 8 << 20);
        assert_eq!(size(" 100k ").unwrap(), 100 << 10);
        assert_eq!(size("1G").unwrap(), 1 << 30);
        for bad in ["8X", "M", "", "6G", "99K", "-1M", "8MB"] {
            let err = size(bad).unwrap_err();
            assert!(
                err.message.contains("(or with K, M or G: 8M)"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn a_bad_value_from_the_environment_names_its_variable() {
        let err = Settings::resolve_with_env(
            |_| None,
            |k| (k == "FLUXO_PART_SIZE").then(|| "lots".into()),
        )
        .unwrap_err();
        assert!(err.message.contains("fluxo.part_size"), "{err}");
        assert!(
            err.message
                .ends_with("(set by the environment variable FLUXO_PART_SIZE)"),
            "{err}"
        );
        let from_ini = Settings::resolve_with_env(
            |k| (k == "part_size").then(|| "lots".into()),
            |k| (k == "FLUXO_PARALLEL_PARTS").then(|| "2".into()),
        )
        .unwrap_err();
        assert!(!from_ini.message.contains("environment"), "{from_ini}");
        assert!(names_key("fluxo.workers must be", "workers"));
        assert!(!names_key("fluxo.auth_token_file must be", "auth_token"));
    }

    #[test]
    fn an_empty_environment_variable_counts_as_unset() {
        let st = Settings::resolve_with_env(
            |k| (k == "auth_token").then(|| "secret".into()),
            |k| (k == "FLUXO_AUTH_TOKEN").then(String::new),
        )
        .unwrap();
        assert_eq!(st.server.auth_token.expose(), "secret");
    }

    #[test]
    fn options_given_in_code_rank_above_the_environment() {
        let st = Settings::resolve_layers(
            |k| (k == "grpc_listen").then(|| "127.0.0.1:1111".into()),
            |k| (k == "FLUXO_GRPC_LISTEN").then(|| "127.0.0.1:2222".into()),
            |k| (k == "grpc_listen").then(|| "127.0.0.1:3333".into()),
        )
        .unwrap();
        assert_eq!(st.server.grpc_listen, "127.0.0.1:1111");
    }

    #[test]
    fn well_known_env_names_rank_below_fluxo_ones() {
        let env = |k: &str| match k {
            "AWS_ACCESS_KEY_ID" => Some("from-aws".to_owned()),
            "OSS_BUCKET" => Some("from-oss-env".to_owned()),
            "FLUXO_OSS_BUCKET" => Some("from-fluxo".to_owned()),
            "AWS_SECRET_ACCESS_KEY" => Some("hunter2".to_owned()),
            _ => None,
        };
        let st =
            Settings::resolve_with_env(|k| (k == "s3_access_key_id").then(|| "ini".into()), env)
                .unwrap();
        assert_eq!(st.s3.access_key_id, "from-aws");
        assert_eq!(st.oss.bucket, "from-fluxo");
        assert_eq!(st.s3.region, "us-east-1");
        let shown = format!("{st:?} {:?}", st.describe());
        assert!(
            !shown.contains("hunter2") && shown.contains("***"),
            "{shown}"
        );
    }

    #[test]
    fn a_broken_number_format_is_refused() {
        for fine in [
            "#,##0.00",
            "0.00\"元\";[Red]-0.00\"元\"",
            "yyyy-mm-dd hh:mm",
            "\\[0\\]",
            "\"[;\"0",
            "[$-804]yyyy\"年\"m\"月\"d\"日\"",
            "0;-0;0;@",
            "0_\"",
            "#,##0*;0;0;0",
        ] {
            assert_eq!(number_format("f", fine).ok(), Some(fine), "{fine}");
        }
        for (broken, why) in [
            ("\"unterminated", "a quoted text is not closed"),
            ("[Red0.00", "a [ is not closed"),
            ("0.00\\", "ends with a \\, _ or *"),
            ("0_", "ends with a \\, _ or *"),
            ("0;0;0;@;0", "more than the 4 sections"),
            (" ", "is empty"),
        ] {
            let err = number_format("columns[0].format", broken).unwrap_err();
            assert!(
                err.message
                    .starts_with(&format!("option \"columns[0].format\" (\"{broken}\"): "))
                    && err.message.contains(why),
                "{err}"
            );
        }
        assert!(number_format("f", &"0".repeat(256)).is_err());
    }

    #[test]
    fn an_empty_date_pattern_is_refused() {
        for empty in ["", " "] {
            let err = parse_csv(&map(vec![("time_format", s(empty))])).unwrap_err();
            assert!(
                err.message
                    .contains("option \"csv.time_format\" is empty: give a pattern"),
                "{err}"
            );
        }
    }

    #[test]
    fn csv_texts_must_fit_the_encoding() {
        let csv = |encoding: &str, key: &str, text: &str| {
            parse_csv(&map(vec![("encoding", s(encoding)), (key, s(text))]))
        };
        let err = csv("gbk", "null", "😀").unwrap_err();
        assert_eq!(
            err.message,
            "option \"csv.null\": character '😀' (U+1F600) cannot be written in GBK; \
             use encoding GB18030 or UTF-8"
        );
        let err = csv("gb18030", "date_format", "Y\u{e5e5}m").unwrap_err();
        assert!(err.message.contains("csv.date_format"), "{err}");
        assert!(csv("gbk", "true", "是").is_ok());
        assert!(csv("gb18030", "false", "😀").is_ok());
        assert!(csv("utf-8", "null", "😀").is_ok());
    }

    #[test]
    fn a_stored_csv_names_the_charset_it_is_written_in() {
        let st = Settings::resolve_with_env(|_| None, |_| None).unwrap();
        let content_type = |format: &str, csv: Vec<(&str, OptionValue)>| {
            let options = map(vec![
                ("format", s(format)),
                ("columns", OptionValue::List(vec![s("a")])),
                ("csv", map(csv)),
            ]);
            ExportSpec::from_options(&options, &st)
                .unwrap()
                .content_type()
        };
        assert_eq!(content_type("csv", vec![]), "text/csv; charset=utf-8");
        assert_eq!(
            content_type("csv", vec![("encoding", s("gbk"))]),
            "text/csv; charset=GBK"
        );
        assert_eq!(
            content_type("csv", vec![("encoding", s("GB18030"))]),
            "text/csv; charset=GB18030"
        );
        assert_eq!(
            content_type("csv", vec![("encoding", s("utf-16le"))]),
            "text/csv; charset=UTF-16LE"
        );
        assert_eq!(
            content_type("csv", vec![("compression", s("gzip"))]),
            "application/gzip"
        );
        assert_eq!(content_type("xlsx", vec![]), crate::writer::XLSX_MEDIA_TYPE);
    }

    #[test]
    fn headers_must_fit_the_encoding_and_a_cell() {
        let st = Settings::resolve_with_env(|_| None, |_| None).unwrap();
        let spec = |names: Vec<OptionValue>, csv: Vec<(&str, OptionValue)>| {
            let options = map(vec![
                ("columns", OptionValue::List(names)),
                ("csv", map(csv)),
            ]);
            ExportSpec::from_options(&options, &st)
        };
        let gbk = || vec![("encoding", s("gbk"))];
        let err = spec(vec![s("id"), s("😀")], gbk()).unwrap_err();
        assert_eq!(
            err.message,
            "columns[1] \"😀\": character '😀' (U+1F600) cannot be written in GBK; \
             use encoding GB18030 or UTF-8, or csv option unencodable => 'replace'"
        );
        let mut no_header = gbk();
        no_header.push(("header", OptionValue::Bool(false)));
        assert!(spec(vec![s("😀")], no_header).is_ok());
        let mut replaced = gbk();
        replaced.push(("unencodable", s("replace")));
        assert!(spec(vec![s("😀")], replaced).is_ok());
        let long = "é".repeat(32_768);
        let err = spec(vec![s("id"), s(&long)], vec![]).unwrap_err();
        assert_eq!(
            err.message,
            "columns[1]: the name is 32768 characters long as Excel counts them (an emoji is two); \
             a header cell holds at most 32767"
        );
        assert!(spec(vec![s(&long[2..])], vec![]).is_ok());
    }

    #[test]
    fn column_names_are_unique_and_xlsx_sheets_narrow_enough() {
        let names = |n: usize| {
            OptionValue::List((0..n).map(|i| OptionValue::Str(format!("c{i}"))).collect())
        };
        let dup = OptionValue::List(vec![
            OptionValue::Str("id".into()),
            OptionValue::Str("id".into()),
        ]);
        let err = parse_columns(&dup).unwrap_err();
        assert!(
            err.message
                .contains("columns[1]: the name \"id\" is already used by columns[0]"),
            "{err}"
        );

        let settings = Settings::resolve_with_env(|_| None, |_| None).unwrap();
        let spec = |format: &str, n: usize| {
            let options = OptionValue::Map(vec![
                ("format".into(), OptionValue::Str(format.into())),
                ("columns".into(), names(n)),
            ]);
            ExportSpec::from_options(&options, &settings)
        };
        assert!(spec("csv", 20_000).is_ok());
        assert!(spec("xlsx", 16_384).is_ok());
        let err = spec("xlsx", 16_385).unwrap_err();
        assert!(
            err.message.contains("at most 16,384 columns, not 16385"),
            "{err}"
        );
    }

    #[test]
    fn a_key_prefix_cannot_leave_the_storage_root() {
        let prefix = |v: &'static str| {
            Settings::resolve_with_env(move |k| (k == "key_prefix").then(|| v.into()), |_| None)
                .map(|s| s.key_prefix)
        };
        assert_eq!(prefix("/tenant-7/exports/").unwrap(), "tenant-7/exports");
        assert_eq!(prefix("a//b///c").unwrap(), "a/b/c");
        for bad in [
            "..",
            "../x",
            "a/../../b",
            "./a",
            "a/.",
            "a\\..\\b",
            "a\0b",
            "a\nb",
        ] {
            let err = prefix(bad).unwrap_err();
            assert!(err.message.contains("fluxo.key_prefix"), "{bad:?}: {err}");
        }
    }

    #[test]
    fn workers_zero_means_one_deflate_thread_per_core() {
        let workers = |v: &'static str| {
            Settings::resolve_with_env(move |k| (k == "workers").then(|| v.into()), |_| None).map(
                |st| {
                    let options = map(vec![("columns", OptionValue::List(vec![s("A")]))]);
                    (st.workers, ExportSpec::from_options(&options, &st))
                },
            )
        };
        let (n, spec) = workers("3").unwrap();
        assert_eq!(n, 3);
        assert_eq!(spec.unwrap().xlsx.deflate_threads, 3);
        let cores = std::thread::available_parallelism().unwrap().get();
        assert_eq!(workers("0").unwrap().0, cores.min(4));
        let err = workers("65").unwrap_err();
        assert!(err.message.contains("fluxo.workers"), "{err}");
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
        let with_dir = |dir: &str| {
            let options = map(vec![
                ("columns", OptionValue::List(vec![s("a")])),
                ("local_dir", s(dir)),
            ]);
            ExportSpec::from_options(&options, &st).map(|spec| spec.local_dir)
        };
        assert_eq!(with_dir(""), Ok(None), "empty: fluxo.local_dir");
        assert_eq!(with_dir("  "), Ok(None));
        assert_eq!(with_dir("/srv/out"), Ok(Some(PathBuf::from("/srv/out"))));
        assert!(with_dir("exports").unwrap_err().message.starts_with(
            "option \"local_dir\" must be an absolute path, not \"exports\": a relative one"
        ));
        for key in ["local_dir", "work_dir"] {
            let relative = Settings::resolve_with_env(
                |k| (k == key).then(|| "fluxo-files".to_owned()),
                |_| None,
            );
            assert_eq!(
                relative.unwrap_err().message,
                format!(
                    "fluxo.{key} must be an absolute path, not \"fluxo-files\": a relative one \
                     would depend on the working directory, which PHP-FPM sets to each script's folder"
                )
            );
        }

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
            ("storage", s("ftp"))
        ]))
        .contains("unknown storage \"ftp\"; valid: local, oss, s3"));
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
        for nameless in ["", "...", "  .csv", "\0.csv", ".CSV", "\u{202E}"] {
            assert_eq!(sanitize_filename(nameless, Format::Csv), "", "{nameless:?}");
        }
        assert_eq!(sanitize_filename("...", Format::Xlsx), "");
        assert_eq!(
            sanitize_filename("invoice\u{202E}fdp.csv", Format::Csv),
            "invoicefdp.csv"
        );
        assert_eq!(sanitize_filename("trailing. ", Format::Csv), "trailing.csv");
        assert_eq!(
            sanitize_filename("orders.csv.GZ", Format::Csv),
            "orders.csv"
        );
        assert_eq!(sanitize_filename("orders.gz", Format::Csv), "orders.csv");
        assert_eq!(
            sanitize_filename("a<b>c:d|e?f*\"g\".csv", Format::Csv),
            "a_b_c_d_e_f__g_.csv"
        );
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

    #[test]
    fn config_example_reads_as_the_defaults_in_the_server() {
        let known = |key: &str| super::KEYS.iter().any(|(k, ..)| *k == key);
        let values = crate::ini::parse(include_str!("../config.example.ini"), known, |_| None)
            .expect("config.example.ini reads");
        for (key, default, _) in super::KEYS {
            assert_eq!(
                values.get(*key).map(String::as_str),
                Some(*default),
                "{key}"
            );
        }
    }
}

/// Settings of the gRPC/HTTP server (`fluxo-export-server`, `Fluxo\Server`)
/// and of signed local download URLs.
#[derive(Clone, Debug, PartialEq)]
pub struct ServerSettings {
    pub grpc_listen: String,
    pub status_listen: String,
    pub metrics_listen: String,
    pub auth_token: Secret,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub idempotency_ttl: Duration,
    pub task_queue_size: usize,
    pub max_message_size: usize,
    /// A stream that sends nothing for this long fails its export, which
    /// would otherwise hold its slot for ever; zero: no limit.
    pub stream_idle_timeout: Duration,
    /// `https://exports.example.com`: local files get signed URLs under it.
    pub public_base_url: String,
    pub download_secret: Secret,
    pub log_format: String,
}

/// A base URL for signed downloads is an http(s) URL with a host, and
/// needs the secret it signs with: without one, results quietly stayed
/// `file://` URLs.
fn check_public_base_url(url: &str, secret: &Secret) -> Result<()> {
    if url.is_empty() {
        return Ok(());
    }
    let lower = url.to_ascii_lowercase();
    let host = lower
        .strip_prefix("https://")
        .or_else(|| lower.strip_prefix("http://"));
    if host.is_none_or(|h| h.is_empty() || h.starts_with('/') || h.contains(char::is_whitespace)) {
        return Err(ExportError::invalid_option(format!(
            "fluxo.public_base_url must be an http:// or https:// URL such as https://exports.example.com, not \"{url}\""
        )));
    }
    if secret.is_empty() {
        return Err(ExportError::invalid_option(
            "fluxo.public_base_url needs fluxo.download_secret: the download URLs under it are signed with that secret",
        ));
    }
    Ok(())
}

/// Whoever knows the secret can sign a URL to any exported file, so a short
/// one, which can be guessed, is refused. It also catches a secret PHP read
/// as an expression: unquoted, `Xk9&mP2q` is `0` in php.ini.
const MIN_DOWNLOAD_SECRET: usize = 16;

fn check_download_secret(secret: &Secret) -> Result<()> {
    let len = secret.expose().chars().count();
    if secret.is_empty() || len >= MIN_DOWNLOAD_SECRET {
        return Ok(());
    }
    Err(ExportError::invalid_option(format!(
        "fluxo.download_secret must be at least {MIN_DOWNLOAD_SECRET} characters (it has {len}): whoever guesses it can sign download URLs. In php.ini, put it in double quotes"
    )))
}

impl ServerSettings {
    fn from_keys(get: &dyn Fn(&str) -> String) -> Result<Self> {
        let path = |key: &str| {
            let v = get(key);
            (!v.trim().is_empty()).then(|| absolute(Path::new(v.trim())))
        };
        let log_format = get("log_format").trim().to_ascii_lowercase();
        if log_format != "json" && log_format != "text" {
            return Err(ExportError::invalid_option(format!(
                "fluxo.log_format must be json or text, not \"{log_format}\""
            )));
        }
        let public_base_url = get("public_base_url")
            .trim()
            .trim_end_matches('/')
            .to_owned();
        let download_secret = Secret(get("download_secret"));
        check_public_base_url(&public_base_url, &download_secret)?;
        check_download_secret(&download_secret)?;
        Ok(Self {
            grpc_listen: get("grpc_listen").trim().to_owned(),
            status_listen: get("status_listen").trim().to_owned(),
            metrics_listen: get("metrics_listen").trim().to_owned(),
            auth_token: Secret(get("auth_token").trim().to_owned()),
            tls_cert: path("tls_cert"),
            tls_key: path("tls_key"),
            idempotency_ttl: Duration::from_secs(number(
                &get("idempotency_ttl"),
                "idempotency_ttl",
                0,
                30 * 86_400,
            )? as u64),
            task_queue_size: number(&get("task_queue_size"), "task_queue_size", 0, 1_000_000)?,
            max_message_size: number(&get("max_message_size"), "max_message_size", 1024, 1 << 30)?,
            stream_idle_timeout: Duration::from_secs(number(
                &get("stream_idle_timeout"),
                "stream_idle_timeout",
                0,
                7 * 86_400,
            )? as u64),
            public_base_url,
            download_secret,
            log_format,
        })
    }

    fn describe(&self) -> Vec<(&'static str, String)> {
        let path = |p: &Option<PathBuf>| {
            p.as_ref()
                .map_or(String::new(), |p| p.display().to_string())
        };
        vec![
            ("grpc_listen", self.grpc_listen.clone()),
            ("status_listen", self.status_listen.clone()),
            ("metrics_listen", self.metrics_listen.clone()),
            ("auth_token", self.auth_token.masked()),
            ("tls_cert", path(&self.tls_cert)),
            ("tls_key", path(&self.tls_key)),
            (
                "idempotency_ttl",
                self.idempotency_ttl.as_secs().to_string(),
            ),
            ("task_queue_size", self.task_queue_size.to_string()),
            ("max_message_size", self.max_message_size.to_string()),
            (
                "stream_idle_timeout",
                self.stream_idle_timeout.as_secs().to_string(),
            ),
            ("public_base_url", self.public_base_url.clone()),
            ("download_secret", self.download_secret.masked()),
            ("log_format", self.log_format.clone()),
        ]
    }
}
