//! Log capture: every test of the binary logs into one buffer, so a test can check that a
//! secret never reached the log, whichever test logged it. What a failing test prints
//! follows `RUST_LOG` as usual.

use std::io::Write;
use std::sync::Mutex;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, fmt};

static LOGS: Mutex<Vec<u8>> = Mutex::new(Vec::new());

struct Captured;

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        LOGS.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Installs the subscriber once for the binary; later calls do nothing.
pub fn init() {
    let printed = EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn,leadlink=info".into());
    // Debug, so a secret logged at any level shows in the capture.
    let captured = EnvFilter::new("warn,leadlink=debug");
    // Both layers without colours: they share each span's formatted fields, and escape
    // codes there would split `path=/...` in the capture.
    let _ = tracing_subscriber::registry()
        .with(
            fmt::layer()
                .with_ansi(false)
                .with_test_writer()
                .with_filter(printed),
        )
        .with(
            fmt::layer()
                .with_ansi(false)
                .with_writer(|| Captured)
                .with_filter(captured),
        )
        .try_init();
}

/// Everything logged so far, by any test.
pub fn captured() -> String {
    String::from_utf8_lossy(&LOGS.lock().unwrap()).into_owned()
}
