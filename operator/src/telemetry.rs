//! Logging setup: `tracing` to stderr, as text or one JSON object per line, filtered by `RUST_LOG`.

use tracing::Subscriber;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::util::SubscriberInitExt;

/// Filter used when `RUST_LOG` is unset or invalid.
pub const DEFAULT_FILTER: &str = "info,kube=warn,russh=warn,tower=warn,hyper=warn";

/// How log lines are formatted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One JSON object per line: `timestamp`, `level`, `target`, and the event's fields flattened.
    Json,
    /// Human-readable lines.
    #[default]
    Text,
}

/// Installs the global subscriber (filter from `RUST_LOG`, else [`DEFAULT_FILTER`]), writing to stderr.
///
/// Idempotent: returns `false` and changes nothing if a global subscriber is already set.
pub fn init(format: LogFormat) -> bool {
    use std::io::IsTerminal;
    let ansi = std::io::stderr().is_terminal();
    subscriber(format, env_filter(), ansi, std::io::stderr)
        .try_init()
        .is_ok()
}

fn env_filter() -> EnvFilter {
    match std::env::var("RUST_LOG") {
        Ok(spec) if !spec.trim().is_empty() => EnvFilter::try_new(&spec).unwrap_or_else(|e| {
            eprintln!("ignoring invalid RUST_LOG {spec:?}: {e}; using {DEFAULT_FILTER:?}");
            EnvFilter::new(DEFAULT_FILTER)
        }),
        _ => EnvFilter::new(DEFAULT_FILTER),
    }
}

fn subscriber<W>(
    format: LogFormat,
    filter: EnvFilter,
    ansi: bool,
    writer: W,
) -> Box<dyn Subscriber + Send + Sync>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(ansi);
    match format {
        LogFormat::Json => Box::new(
            builder
                .json()
                .flatten_event(true)
                .with_current_span(true)
                .with_span_list(false)
                .finish(),
        ),
        LogFormat::Text => Box::new(builder.finish()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buf {
        fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .map_err(|_| std::io::Error::other("poisoned"))?
                .extend_from_slice(data);
            Ok(data.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn capture(format: LogFormat, filter: &str) -> String {
        let buf = Buf::default();
        let out = buf.clone();
        let sub = subscriber(format, EnvFilter::new(filter), false, move || out.clone());
        tracing::subscriber::with_default(sub, || {
            tracing::info!(target: "pgmetal::controller", cluster = "pg-a", "reconciled");
            tracing::info!(target: "kube::client", "chatty");
        });
        let bytes = buf.0.lock().map(|b| b.clone()).unwrap_or_default();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    #[test]
    fn json_lines_are_flat() -> Result<(), serde_json::Error> {
        let out = capture(LogFormat::Json, DEFAULT_FILTER);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 1, "kube=warn must drop the info event: {out}");
        let v: serde_json::Value = serde_json::from_str(lines[0])?;
        assert_eq!(v["message"], "reconciled");
        assert_eq!(v["cluster"], "pg-a");
        assert_eq!(v["target"], "pgmetal::controller");
        assert_eq!(v["level"], "INFO");
        assert!(v["timestamp"].is_string(), "{v}");
        Ok(())
    }

    #[test]
    fn text_lines_and_default_filter() {
        let out = capture(LogFormat::Text, DEFAULT_FILTER);
        assert!(
            out.contains("reconciled") && out.contains("cluster=\"pg-a\""),
            "{out}"
        );
        assert!(!out.contains("chatty"), "{out}");
        assert!(EnvFilter::try_new(DEFAULT_FILTER).is_ok());
    }

    #[test]
    fn init_is_idempotent() {
        let first = init(LogFormat::Text);
        assert!(
            !init(LogFormat::Json),
            "second init must be a no-op (first returned {first})"
        );
    }
}
