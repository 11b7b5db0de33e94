//! Memory allocator settings for training binaries.
//!
//! A training step allocates and frees activation-sized buffers (tens of MB) hundreds of times.
//! With glibc's allocator each such buffer is a fresh `mmap`, so a third of a CPU step went to
//! page faults and page zeroing. mimalloc with purging disabled keeps freed memory mapped and
//! reuses it. Binaries declare `#[global_allocator] static A: mimalloc::MiMalloc` and call
//! [`configure`] first thing in `main`.

/// `mi_option_purge_delay`: position 15 of `mi_option_t` in both mimalloc v2 and v3 headers;
/// libmimalloc-sys 0.1.49 exports no constant for it.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Default delay before freed memory goes back to the OS, in milliseconds.
pub const DEFAULT_PURGE_DELAY_MS: i64 = -1;

/// Keeps freed memory mapped for reuse. `MIMALLOC_PURGE_DELAY` (milliseconds, -1 = never), when
/// set, wins: a larger value trades resident memory for fewer page faults.
pub fn configure() {
    let delay = std::env::var("MIMALLOC_PURGE_DELAY")
        .ok()
        .and_then(|v| v.parse::<i64>().ok())
        .unwrap_or(DEFAULT_PURGE_DELAY_MS);
    // SAFETY: mi_option_set only stores an option value; it is safe to call at any time.
    unsafe {
        libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, delay as std::ffi::c_long);
    }
}
