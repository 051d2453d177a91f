//! The process-wide settings a test may change: [`bcers::set_simd_level`] and
//! [`bcers::set_num_threads`]. The tests of one binary run on parallel threads, so a test that
//! changes a setting, or whose bits depend on one (the SIMD level changes the last bits of
//! results), holds this lock for its whole run.

use std::sync::{Mutex, MutexGuard};

static SETTINGS: Mutex<()> = Mutex::new(());

/// Holds the settings still until the guard is dropped (a test that failed while holding it
/// does not stop the others).
pub fn hold() -> MutexGuard<'static, ()> {
    SETTINGS.lock().unwrap_or_else(|e| e.into_inner())
}
