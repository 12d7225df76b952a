//! A process-wide count of panics. The hook sees every panic, wherever it happens: in a handler
//! (which the HTTP layer's safety net then answers with a 500), in a spawned task such as the run
//! worker, or while a streamed page body is being written, which no layer can catch. Tests read
//! the count to prove that no request made the server panic.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Once;

static PANICS: AtomicU64 = AtomicU64::new(0);
static INSTALL: Once = Once::new();

/// Installs the counting hook once per process (later calls do nothing). It counts, then hands
/// the panic to the hook that was there before, which writes the message to the server's log.
pub fn install_counter() {
    INSTALL.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            PANICS.fetch_add(1, Ordering::Relaxed);
            previous(info);
        }));
    });
}

/// How many panics the process has had since [`install_counter`].
pub fn count() -> u64 {
    PANICS.load(Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_panics_in_other_threads() {
        install_counter();
        let before = count();
        let joined = std::thread::spawn(|| panic!("counted")).join();
        assert!(joined.is_err());
        assert!(count() > before);
    }
}
