//! The allocator setting the pipeline's speed depends on, for the native binaries (the
//! service, the benchmarks), which all use mimalloc as their global allocator.
//!
//! The pipeline frees and allocates tens of megabytes of activations per image. With
//! mimalloc's default (freed memory returned to the OS after 1 s), pages came back as fresh
//! ones, which the kernel clears on first touch, 2 MB at a time with transparent huge pages:
//! measured, about 10 page faults and 5% of the time of every 640x480 detection, back to back.

// The C library this calls into comes with the `mimalloc` crate.
use mimalloc as _;

/// `mi_option_purge_delay`: its place in mimalloc's option enum (the same in v2 and v3).
const PURGE_DELAY: std::ffi::c_int = 15;

unsafe extern "C" {
    fn mi_option_set(option: std::ffi::c_int, value: std::ffi::c_long);
}

/// How long freed memory is kept before it goes back to the OS.
pub const KEEP_FREED_MS: std::ffi::c_long = 10_000;

/// Keeps freed memory for [`KEEP_FREED_MS`] before mimalloc returns it to the OS, instead of
/// 1 s: pages freed by one image are reused by the next, and memory still goes back once the
/// process has been idle that long. Call it first thing in `main`.
pub fn keep_freed_memory() {
    // SAFETY: mimalloc's options may be set at any time; the value is in range.
    unsafe { mi_option_set(PURGE_DELAY, KEEP_FREED_MS) }
}

#[cfg(test)]
mod tests {
    unsafe extern "C" {
        fn mi_option_get(option: std::ffi::c_int) -> std::ffi::c_long;
    }

    /// mimalloc's purge delay now, in milliseconds.
    fn purge_delay_ms() -> std::ffi::c_long {
        // SAFETY: reads an option.
        unsafe { mi_option_get(super::PURGE_DELAY) }
    }

    /// Option 15 is the purge delay: its default is mimalloc v3's 1000 ms (v2's is 10, unless
    /// the environment sets it), and setting it takes.
    #[test]
    fn the_purge_delay_is_the_option_set() {
        let before = purge_delay_ms();
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
            assert!(
                before == 1000 || before == 10 || before == super::KEEP_FREED_MS,
                "{before}"
            );
        }
        super::keep_freed_memory();
        assert_eq!(purge_delay_ms(), super::KEEP_FREED_MS);
    }
}
