//! The server's log output. Every event's message and fields, and every span's fields, pass the
//! sanitizer before they are written: an error that some layer logs with `%error` (a database
//! error quoting a connection string, a session store error, a worker step that failed) cannot
//! carry a secret into a log line, whoever wrote the logging call.

use std::fmt;

use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::{DefaultFields, Format, Writer};
use tracing_subscriber::fmt::{FormatFields, MakeWriter};
use tracing_subscriber::{EnvFilter, FmtSubscriber};

use super::sanitize::redact;

/// Formats fields like tracing's default formatter, then redacts the text.
#[derive(Debug, Default)]
pub struct SanitizedFields {
    inner: DefaultFields,
}

impl<'writer> FormatFields<'writer> for SanitizedFields {
    fn format_fields<R: RecordFields>(
        &self,
        mut writer: Writer<'writer>,
        fields: R,
    ) -> fmt::Result {
        let mut text = String::new();
        self.inner.format_fields(Writer::new(&mut text), fields)?;
        writer.write_str(&redact(&text))
    }
}

/// The log subscriber: `filter` is an `EnvFilter` directive (`info` when it does not parse),
/// `ansi` switches colours on, `writer` receives the lines.
pub fn subscriber<W>(
    filter: &str,
    ansi: bool,
    writer: W,
) -> FmtSubscriber<SanitizedFields, Format, EnvFilter, W>
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    tracing_subscriber::fmt()
        .with_ansi(ansi)
        .with_env_filter(EnvFilter::try_new(filter).unwrap_or_else(|_| "info".into()))
        .fmt_fields(SanitizedFields::default())
        .with_writer(writer)
        .finish()
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use super::*;

    /// Collects everything the subscriber writes.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("not poisoned").extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Captured {
        fn text(&self) -> String {
            String::from_utf8_lossy(&self.0.lock().expect("not poisoned")).into_owned()
        }
    }

    #[test]
    fn secrets_in_logged_errors_and_spans_never_reach_the_output() {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = subscriber("info", false, move || writer.clone());
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("connect", url = "postgres://ta:hunter2hunter2@db/ta");
            let _entered = span.enter();
            let error = "login failed: password=s3cr3t-s3cr3t; Authorization: Bearer abc.def.ghi";
            tracing::error!(%error, "worker step failed");
            tracing::warn!("session store said: Cookie: id=0123456789abcdef");
        });
        let text = captured.text();
        assert!(text.contains("worker step failed"), "{text}");
        assert!(text.contains("postgres://ta:[REDACTED]@db/ta"), "{text}");
        for secret in [
            "hunter2hunter2",
            "s3cr3t-s3cr3t",
            "abc.def.ghi",
            "0123456789abcdef",
        ] {
            assert!(!text.contains(secret), "{secret} reached the log: {text}");
        }
        assert_eq!(text.lines().count(), 2, "one line per event: {text}");
    }
}
