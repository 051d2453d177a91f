//! The thread pool of the crate's own (never rayon's global one).
//!
//! Fork safety: a child process forked while another thread of its parent held a lock keeps that
//! lock held forever (the holder does not exist in the child). So no lock is held while a pool is
//! built (that takes a while), the lock is never waited for (only tried, briefly; a call that
//! cannot get it runs on the caller's thread, with the same result), and a pool inherited through
//! fork (its threads do not exist in the child) is replaced by a new one.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};

use crate::error::Error;

/// The most threads [`set_num_threads`] and `BCERS_NUM_THREADS` accept.
pub const MAX_THREADS: usize = 1024;

/// Threads wanted (0: not decided yet).
static THREADS: AtomicUsize = AtomicUsize::new(0);

/// The pool: the process it was started in, its thread count, the pool.
type PoolSlot = Option<(u32, usize, Arc<rayon::ThreadPool>)>;

static POOL: Mutex<PoolSlot> = Mutex::new(None);

/// The pool's lock, if it can be had at once or after a short spin (it is only ever held for a
/// few instructions). `None` when it cannot: held by a thread that does not exist in this
/// process (a fork) or, very rarely, contended.
fn try_lock_pool() -> Option<MutexGuard<'static, PoolSlot>> {
    for attempt in 0..2000 {
        match POOL.try_lock() {
            Ok(guard) => return Some(guard),
            // A panic elsewhere while holding the lock leaves the state usable: recover it.
            Err(TryLockError::Poisoned(poisoned)) => return Some(poisoned.into_inner()),
            Err(TryLockError::WouldBlock) if attempt < 1000 => core::hint::spin_loop(),
            Err(TryLockError::WouldBlock) => std::thread::yield_now(),
        }
    }
    None
}

/// What the environment variable `BCERS_NUM_THREADS` asks for: `Ok(None)` when it is unset or
/// empty, `Ok(Some(n))` for a whole number `n` from 1 to [`MAX_THREADS`], and `Err` with its
/// value when it is anything else (then it is ignored: the Python package warns about it).
pub fn num_threads_from_env() -> Result<Option<usize>, String> {
    parse_num_threads(std::env::var_os("BCERS_NUM_THREADS").as_deref())
}

/// [`num_threads_from_env`] of the variable's value.
fn parse_num_threads(raw: Option<&std::ffi::OsStr>) -> Result<Option<usize>, String> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    let text = raw.to_string_lossy();
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Ok(None);
    }
    match trimmed.parse::<usize>() {
        Ok(n) if (1..=MAX_THREADS).contains(&n) => Ok(Some(n)),
        _ => Err(text.into_owned()),
    }
}

/// The default thread count: `BCERS_NUM_THREADS` if it holds a usable value, otherwise the
/// number of processors available to this process (at most [`MAX_THREADS`]).
fn default_threads() -> usize {
    match num_threads_from_env() {
        Ok(Some(n)) => n,
        _ => std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(MAX_THREADS),
    }
}

/// The number of threads large calls use.
///
/// Decided on first use: `BCERS_NUM_THREADS` if it is set to a whole number from 1 to
/// [`MAX_THREADS`] (other values are ignored), otherwise the number of processors available to
/// the process; [`set_num_threads`] changes it.
pub fn get_num_threads() -> usize {
    match THREADS.load(Ordering::Relaxed) {
        0 => {
            let n = default_threads();
            // Another thread may have decided first (or set a count): keep theirs.
            match THREADS.compare_exchange(0, n, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => n,
                Err(current) => current,
            }
        }
        n => n,
    }
}

/// Sets the number of threads large calls use, from 1 to [`MAX_THREADS`]. The crate's own
/// pool is rebuilt on next use; rayon's global pool is never touched.
///
/// # Errors
/// [`Error::InvalidThreadCount`] for 0 or more than [`MAX_THREADS`].
pub fn set_num_threads(threads: usize) -> Result<(), Error> {
    if !(1..=MAX_THREADS).contains(&threads) {
        return Err(Error::InvalidThreadCount { requested: threads });
    }
    THREADS.store(threads, Ordering::Relaxed);
    Ok(())
}

/// The crate's pool for calls on `threads` threads (at least 2): the caller's and `threads - 1`
/// of the pool's. Started on first use, again after [`set_num_threads`] changed the count, and
/// again in a child process after `fork` (whose copy of the parent's pool has no threads
/// behind it). `None` when the pool's lock cannot be had (see above): the caller then runs on
/// its own thread.
pub(crate) fn pool(threads: usize) -> Result<Option<Arc<rayon::ThreadPool>>, Error> {
    let pid = std::process::id();
    {
        let Some(slot) = try_lock_pool() else {
            return Ok(None);
        };
        if let Some((owner, n, pool)) = slot.as_ref() {
            if *owner == pid && *n == threads {
                return Ok(Some(Arc::clone(pool)));
            }
        }
    }
    // Built with no lock held.
    let built = rayon::ThreadPoolBuilder::new()
        .num_threads(threads.saturating_sub(1).max(1))
        .thread_name(|i| format!("bcers-{i}"))
        .build()
        .map_err(|e| Error::ThreadPool(e.to_string()))?;
    let built = Arc::new(built);
    let Some(mut slot) = try_lock_pool() else {
        return Ok(Some(built));
    };
    if let Some((owner, n, pool)) = slot.as_ref() {
        if *owner == pid && *n == threads {
            // Another thread built one meanwhile: use it, drop ours.
            return Ok(Some(Arc::clone(pool)));
        }
    }
    let old = slot.replace((pid, threads, Arc::clone(&built)));
    drop(slot);
    match old {
        // Inherited through fork: its threads do not exist here, and dropping it would signal
        // them. Leave it be.
        Some((owner, _, stale)) if owner != pid => std::mem::forget(stale),
        // Replaced after a change of the thread count: its threads end once idle.
        other => drop(other),
    }
    Ok(Some(built))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thread_counts_from_the_environment() {
        let parse = |v: &str| parse_num_threads(Some(std::ffi::OsStr::new(v)));
        assert_eq!(parse_num_threads(None), Ok(None));
        assert_eq!(parse(""), Ok(None));
        assert_eq!(parse("  "), Ok(None));
        assert_eq!(parse("1"), Ok(Some(1)));
        assert_eq!(parse(" 8 "), Ok(Some(8)));
        assert_eq!(parse("1024"), Ok(Some(1024)));
        for bad in [
            "0",
            "1025",
            "99999",
            "-1",
            "abc",
            "2.5",
            "1e3",
            "18446744073709551616",
        ] {
            assert_eq!(parse(bad), Err(bad.to_owned()), "{bad}");
        }
    }
}
