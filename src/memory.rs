//! The process's heap: how many malloc arenas glibc may keep.
//!
//! glibc gives a thread that finds the heap locked an arena of its own, up to 8 per core,
//! and rarely gives an arena's freed pages back. Compiling a module runs Cranelift on
//! blocking-pool threads, and each compile's allocations land in whichever arenas those
//! threads got, so every upload left some more memory resident: measured with a release
//! build, 25 uploads of a 2 MB Go module (no traffic, modules unloaded 10 s after use) took
//! the process's anonymous memory from 52 to 103 MiB and it kept growing; with two arenas it
//! stayed within 48–66 MiB, and the 30-minute soak's RSS drift went from +17.2% to −0.8%
//! (benches/README.md, "Soak").
//! jemalloc, preloaded, peaked higher (108 MiB) before its decay gave memory back.
//!
//! So the process keeps [`ARENAS_PER_CORE`] arenas per core unless the operator set
//! `MALLOC_ARENA_MAX`, which wins.

/// Arenas per core: one, so the tokio workers (one per core) rarely wait for each other and
/// compile threads share them instead of growing new ones.
pub const ARENAS_PER_CORE: usize = 1;

/// Caps glibc's malloc arenas (see the module doc). Call before any thread is started.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn limit_malloc_arenas() {
    if std::env::var_os("MALLOC_ARENA_MAX").is_some() {
        return;
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let arenas = i32::try_from(cores.saturating_mul(ARENAS_PER_CORE).max(2)).unwrap_or(i32::MAX);
    #[expect(
        unsafe_code,
        reason = "mallopt is glibc's documented knob for this; it takes plain integers"
    )]
    // SAFETY: mallopt only records the limit; called before other threads allocate.
    let ok = unsafe { libc::mallopt(libc::M_ARENA_MAX, arenas) };
    if ok == 0 {
        eprintln!(
            "warning: mallopt(M_ARENA_MAX, {arenas}) refused; memory may grow with each compile"
        );
    }
}

/// Other allocators keep their own arenas: nothing to do.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn limit_malloc_arenas() {}
