//! The server's log output. Every event's message and fields, and every span's fields, pass the
//! sanitizer before they are written: an error that some layer logs with `%error` (a database
//! error quoting a connection string, a session store error, a worker step that failed) cannot
//! carry a secret into a log line, whoever wrote the logging call.

use std::fmt;
use std::io::{self, Write};

use tracing::field::{Field, Visit};
use tracing_subscriber::field::{RecordFields, VisitOutput};
use tracing_subscriber::fmt::format::{DefaultVisitor, Format, Writer};
use tracing_subscriber::fmt::{FormatFields, MakeWriter};
use tracing_subscriber::{EnvFilter, FmtSubscriber};

use super::sanitize::{is_secret_name, redact, REDACTED};

/// Formats fields like tracing's default formatter, and redacts each field (`name=value`, or
/// the message) on its own: the sanitizer reads a text only so far and marks a cut with `…`, so
/// one long field (a 5,000-character `%error`) is cut without pushing the fields after it
/// (`run_id=7`) out of the line. The JSON format redacts each string on its own too.
#[derive(Debug, Default)]
pub struct SanitizedFields;

impl<'writer> FormatFields<'writer> for SanitizedFields {
    fn format_fields<R: RecordFields>(&self, writer: Writer<'writer>, fields: R) -> fmt::Result {
        let mut visitor = RedactEachField {
            writer,
            is_empty: true,
            result: Ok(()),
        };
        fields.record(&mut visitor);
        visitor.result
    }
}

/// Writes each field as [`DefaultVisitor`] formats it, redacted, separated by spaces.
struct RedactEachField<'writer> {
    writer: Writer<'writer>,
    is_empty: bool,
    result: fmt::Result,
}

impl RedactEachField<'_> {
    /// Writes `field` as `record` formats it; a field named as a secret (`password`,
    /// `clientSecret`) as `name=[REDACTED]`, whatever its value holds (the sanitizer reads an
    /// unquoted value only up to a space or a `;`).
    fn write_field(&mut self, field: &Field, record: impl FnOnce(&mut DefaultVisitor<'_>)) {
        if self.result.is_err() {
            return;
        }
        let mut text = String::new();
        let mut visitor = DefaultVisitor::new(Writer::new(&mut text), true);
        if is_secret_name(field.name()) {
            visitor.record_debug(field, &format_args!("{REDACTED}"));
        } else {
            record(&mut visitor);
        }
        self.result = visitor.finish();
        // The default formatter writes nothing for the `log.` fields it has shown already.
        if self.result.is_err() || text.is_empty() {
            return;
        }
        if !std::mem::replace(&mut self.is_empty, false) {
            self.result = self.writer.write_char(' ');
        }
        self.result = self
            .result
            .and_then(|()| self.writer.write_str(&redact(&text)));
    }
}

impl Visit for RedactEachField<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.write_field(field, |visitor| visitor.record_str(field, value));
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.write_field(field, |visitor| visitor.record_error(field, value));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.write_field(field, |visitor| visitor.record_debug(field, value));
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
        .fmt_fields(SanitizedFields)
        .with_writer(writer)
        .finish()
}

/// The log subscriber for log shippers: one JSON object per line. tracing's JSON format reads
/// the fields itself, so here the sanitizer works on each finished line: every string in it is
/// redacted on its own, so a redaction never swallows the JSON around a value, and a field
/// named as a secret loses its whole value.
pub fn json_subscriber<W>(filter: &str, writer: W) -> impl tracing::Subscriber + Send + Sync
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    tracing_subscriber::fmt()
        .json()
        .with_current_span(true)
        .with_env_filter(EnvFilter::try_new(filter).unwrap_or_else(|_| "info".into()))
        .with_writer(RedactedLines(writer))
        .finish()
}

/// Hands out writers that redact what they were given, line by line, when dropped (the
/// formatter writes each event whole through one writer).
struct RedactedLines<M>(M);

impl<'a, M: MakeWriter<'a>> MakeWriter<'a> for RedactedLines<M> {
    type Writer = LineRedactor<M::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        LineRedactor {
            inner: self.0.make_writer(),
            buffer: Vec::new(),
        }
    }
}

struct LineRedactor<W: Write> {
    inner: W,
    buffer: Vec<u8>,
}

impl<W: Write> Write for LineRedactor<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.buffer.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<W: Write> Drop for LineRedactor<W> {
    fn drop(&mut self) {
        let text = String::from_utf8_lossy(&self.buffer);
        let mut out = String::with_capacity(text.len());
        for line in text.lines() {
            match serde_json::from_str::<serde_json::Value>(line) {
                Ok(mut value) => {
                    redact_strings(&mut value);
                    out.push_str(&value.to_string());
                }
                Err(_) => out.push_str(&redact(line)),
            }
            out.push('\n');
        }
        // A log line that cannot be written has nowhere else to go.
        let _ = self.inner.write_all(out.as_bytes());
        let _ = self.inner.flush();
    }
}

/// Redacts every string, and the whole value of a field whose name is a secret's
/// (`password = "…"`, `client_secret = %x`): a string redacted on its own no longer has its
/// name beside it, as the text format's `name=value` has. Keys stay: they are field names
/// written in the code.
fn redact_strings(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::String(text) => *text = redact(text),
        serde_json::Value::Array(items) => items.iter_mut().for_each(redact_strings),
        serde_json::Value::Object(fields) => {
            for (name, value) in fields.iter_mut() {
                if is_secret_name(name) && !value.is_null() {
                    *value = serde_json::Value::String(REDACTED.into());
                } else {
                    redact_strings(value);
                }
            }
        }
        _ => {}
    }
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

    #[test]
    fn a_long_field_is_cut_visibly_and_keeps_the_fields_after_it() {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = subscriber("info", false, move || writer.clone());
        tracing::subscriber::with_default(subscriber, || {
            tracing::error!(error = %"x ".repeat(3000), run_id = 7_i64, "step failed");
        });
        let text = captured.text();
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(text.contains("step failed"), "{text}");
        assert!(text.contains("x…"), "the cut is marked: {text}");
        assert!(text.contains(" run_id=7"), "{text}");
    }

    /// An event with two secret fields and a harmless one.
    fn log_secret_fields() {
        tracing::warn!(
            password = "hunter2-horse",
            clientSecret = %"AbC123xyz987",
            token = %"first;second third",
            user = "ann",
            "x"
        );
    }

    #[test]
    fn json_fields_named_as_secrets_lose_their_values() {
        // Found in review: each string was redacted without its key, so a secret field's
        // value (`password = "…"`) reached the JSON line as it was.
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = json_subscriber("info", move || writer.clone());
        tracing::subscriber::with_default(subscriber, log_secret_fields);
        let text = captured.text();
        let line: serde_json::Value = serde_json::from_str(text.trim()).expect("one JSON line");
        assert_eq!(line["fields"]["password"], REDACTED, "{text}");
        assert_eq!(line["fields"]["clientSecret"], REDACTED, "{text}");
        assert_eq!(line["fields"]["user"], "ann", "{text}");
        for secret in ["hunter2-horse", "AbC123xyz987", "first", "second", "third"] {
            assert!(!text.contains(secret), "{secret} reached the log: {text}");
        }
    }

    #[test]
    fn text_fields_named_as_secrets_lose_their_values() {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = subscriber("info", false, move || writer.clone());
        tracing::subscriber::with_default(subscriber, log_secret_fields);
        let text = captured.text();
        assert!(text.contains("user=\"ann\""), "{text}");
        // A value the sanitizer would read only up to its `;` or space goes whole.
        assert!(text.contains("token=[REDACTED] user"), "{text}");
        for secret in ["hunter2-horse", "AbC123xyz987", "first", "second", "third"] {
            assert!(!text.contains(secret), "{secret} reached the log: {text}");
        }
    }

    #[test]
    fn json_lines_are_valid_json_without_the_secrets() {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = json_subscriber("info", move || writer.clone());
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!(
                "run",
                run_id = 7_i64,
                url = "postgres://ta:hunter2hunter2@db/ta"
            );
            let _entered = span.enter();
            let error = "login failed: password=s3cr3t-s3cr3t; Authorization: Bearer abc.def.ghi";
            tracing::error!(%error, "worker step\nfailed \"quoted\"");
            tracing::warn!(cookie = "Cookie: id=0123456789abcdef", "session store");
        });
        let text = captured.text();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
            .collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert_eq!(lines[0]["level"], "ERROR");
        assert_eq!(
            lines[0]["fields"]["message"], "worker step failed \"quoted\"",
            "whitespace collapsed, as in text lines"
        );
        assert_eq!(lines[0]["span"]["run_id"], 7);
        for secret in [
            "hunter2hunter2",
            "s3cr3t-s3cr3t",
            "abc.def.ghi",
            "0123456789abcdef",
        ] {
            assert!(!text.contains(secret), "{secret} reached the log: {text}");
        }
    }
}
