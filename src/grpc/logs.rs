//! Server logs as JSON lines in the seed's shape:
//! `{"timestamp","level","task_id","component","event","message","fields","duration"}`,
//! to stdout and, with `fluxo.log_file`, to a daily rolling file beside it.

use std::io::Write;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::Settings;

#[derive(Default)]
struct Fields(Map<String, Value>);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0
            .insert(field.name().into(), Value::String(format!("{value:?}")));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0
            .insert(field.name().into(), Value::String(value.into()));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), value.into());
    }
}

/// `2026-11-29T10:00:00.123Z`
pub fn timestamp(unix_ms: u64) -> String {
    let t = crate::schema::LocalDateTime {
        seconds: (unix_ms / 1000) as i64,
        nanos: 0,
    };
    let (y, mo, d, h, mi, s) = t.parts();
    format!(
        "{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{:03}Z",
        unix_ms % 1000
    )
}

/// One event as a seed-shaped JSON object.
fn line(event: &Event<'_>) -> Value {
    let mut fields = Fields::default();
    event.record(&mut fields);
    let mut f = fields.0;
    let mut take = |k: &str| f.remove(k);
    let message = take("message").unwrap_or(Value::String(String::new()));
    let task_id = take("task_id").unwrap_or(Value::Null);
    let component =
        take("component").unwrap_or_else(|| Value::String(event.metadata().target().to_owned()));
    let name = take("event").unwrap_or(Value::Null);
    let duration = take("duration").unwrap_or(Value::Null);
    serde_json::json!({
        "timestamp": timestamp(crate::task::registry::now_ms()),
        "level": event.metadata().level().as_str(),
        "task_id": task_id,
        "component": component,
        "event": name,
        "message": message,
        "fields": Value::Object(f),
        "duration": duration,
    })
}

struct SeedJson<W> {
    make: W,
}

impl<S, W> Layer<S> for SeedJson<W>
where
    S: Subscriber,
    W: for<'a> tracing_subscriber::fmt::MakeWriter<'a> + 'static,
{
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut text = line(event).to_string();
        text.push('\n');
        let _ = self.make.make_writer().write_all(text.as_bytes());
    }
}

/// Keeps the file writer's buffer alive; drop it last to flush the logs.
pub struct LogGuard {
    _file: Option<tracing_appender::non_blocking::WorkerGuard>,
}

/// Days of server log files kept: older ones are deleted as a day begins.
const LOG_FILES_KEPT: usize = 14;

/// Installs the server's log subscriber by `fluxo.log_level`,
/// `fluxo.log_format` and `fluxo.log_file`. A subscriber already installed
/// (a host application's) is kept.
pub fn init(settings: &Settings) -> Result<LogGuard, String> {
    let filter = EnvFilter::try_new(format!("fluxo={}", settings.log_level))
        .unwrap_or_else(|_| EnvFilter::new("fluxo=info"));
    let (file, guard) = match &settings.log_file {
        Some(path) => {
            let dir = path.parent().map(|p| p.to_path_buf()).unwrap_or_default();
            let prefix = path
                .file_name()
                .map_or("fluxo-export-server.log".into(), |n| {
                    n.to_string_lossy().into_owned()
                });
            let appender = tracing_appender::rolling::RollingFileAppender::builder()
                .rotation(tracing_appender::rolling::Rotation::DAILY)
                .max_log_files(LOG_FILES_KEPT)
                .filename_prefix(prefix)
                .build(dir)
                .map_err(|e| format!("cannot write fluxo.log_file {}: {e}", path.display()))?;
            let (writer, guard) = tracing_appender::non_blocking(appender);
            (Some(writer), Some(guard))
        }
        None => (None, None),
    };
    let registry = tracing_subscriber::registry().with(filter);
    let result = if settings.server.log_format == "text" {
        registry
            // Colours only on a terminal: a redirected log gets no escape codes.
            .with(
                tracing_subscriber::fmt::layer()
                    .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
                    .with_writer(std::io::stdout),
            )
            .with(file.map(|w| {
                tracing_subscriber::fmt::layer()
                    .with_ansi(false)
                    .with_writer(w)
            }))
            .try_init()
    } else {
        registry
            .with(SeedJson {
                make: std::io::stdout,
            })
            .with(file.map(|w| SeedJson { make: w }))
            .try_init()
    };
    let _ = result;
    Ok(LogGuard { _file: guard })
}

#[cfg(test)]
mod tests {
    #[test]
    fn timestamps_are_rfc3339_utc() {
        assert_eq!(
            super::timestamp(1_795_946_400_123),
            "2026-11-29T10:00:00.123Z"
        );
    }
}
