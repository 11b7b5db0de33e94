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

/// Keeps freed memory mapped for reuse (no purge back to the OS).
pub fn configure() {
    // SAFETY: mi_option_set only stores an option value; it is safe to call at any time.
    unsafe {
        libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1);
    }
}
