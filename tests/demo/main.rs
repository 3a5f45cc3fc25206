//! The embedded default and `scripts/demo.sh`, as the README starts them: both listen on the
//! README's fixed addresses (127.0.0.1:4000, 127.0.0.10:3000, ...), so they run one at a time
//! (`FIXED_PORTS`), in a binary of their own.

use std::sync::{Mutex, MutexGuard};

mod embedded;
mod stack;

/// Held by every test of this binary: the fixed ports are free again when it is released.
fn fixed_ports() -> MutexGuard<'static, ()> {
    static FIXED_PORTS: Mutex<()> = Mutex::new(());
    FIXED_PORTS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
