//! The process's heap: how many malloc arenas glibc may keep.
//!
//! glibc gives each new thread that allocates an arena of its own, up to 8 per core (the
//! test below sees 8 for 6 threads on 2 cores), and rarely gives an arena's freed pages back. Compiling a module runs Cranelift on
//! blocking-pool threads, and each compile's allocations land in whichever arenas those
//! threads got, so every upload left some more memory resident: measured with a release
//! build, 25 uploads of a 2 MB Go module (no traffic, modules unloaded 10 s after use) took
//! the process's anonymous memory from 52 to 103 MiB and it kept growing; with two arenas it
//! stayed within 48–66 MiB, and the 30-minute soak's RSS drift went from +17.2% to −0.8%
//! (benches/README.md, "Soak").
//! jemalloc, preloaded, peaked higher (108 MiB) before its decay gave memory back.
//!
//! So the process keeps [`ARENAS_PER_CORE`] arenas per core (at least two) unless the
//! operator set `MALLOC_ARENA_MAX`, which wins.

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

#[cfg(all(test, target_os = "linux", target_env = "gnu"))]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use std::process::Command;

    /// Set in the child process the test re-runs itself in: `capped` or `uncapped`.
    const CHILD: &str = "PLATFORM_ARENA_TEST_CHILD";
    const TEST: &str = "memory::tests::threads_share_the_capped_arenas";

    /// The heaps (arenas) glibc reports in `malloc_info`.
    fn arenas() -> usize {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("malloc-info.xml");
        let c_path = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
        #[expect(unsafe_code, reason = "glibc's malloc_info writes to a C stream")]
        // SAFETY: the stream is opened, written once and closed here.
        unsafe {
            let f = libc::fopen(c_path.as_ptr(), c"w".as_ptr());
            assert!(!f.is_null(), "cannot open {}", path.display());
            libc::malloc_info(0, f);
            libc::fclose(f);
        }
        std::fs::read_to_string(&path)
            .unwrap()
            .matches("<heap nr=")
            .count()
    }

    /// `n` threads allocating at once, as the compile worker's blocking threads do: glibc
    /// gives each new thread an arena of its own while it may.
    fn allocate_on_many_threads(n: usize) {
        let start = std::sync::Arc::new(std::sync::Barrier::new(n));
        let threads: Vec<_> = (0..n)
            .map(|i| {
                let start = start.clone();
                std::thread::spawn(move || {
                    start.wait();
                    let mut kept = Vec::new();
                    for n in 0..2000 {
                        kept.push(vec![u8::try_from(i % 256).unwrap_or(0); 64 + (n % 4096)]);
                        if kept.len() > 64 {
                            kept.clear();
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
    }

    fn run_child(mode: &str) -> String {
        let out = Command::new(std::env::current_exe().unwrap())
            .args([TEST, "--exact", "--test-threads=1", "--nocapture"])
            .env(CHILD, mode)
            .env_remove("MALLOC_ARENA_MAX")
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "child ({mode}) failed:\n{text}");
        text
    }

    /// The regression test of the soak's RSS creep: with the cap, threads that allocate at
    /// once share at most one arena per core (at least two); without it (the child run
    /// `uncapped`, which shows this test can fail) glibc grows more.
    #[test]
    fn threads_share_the_capped_arenas() {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let cap = (cores * super::ARENAS_PER_CORE).max(2);
        match std::env::var(CHILD).as_deref() {
            Ok("capped") => {
                super::limit_malloc_arenas();
                allocate_on_many_threads(2 * cap + 2);
                let n = arenas();
                println!("arenas: {n}");
                assert!(n <= cap, "{n} arenas with the cap of {cap}");
            }
            Ok(_) => {
                allocate_on_many_threads(2 * cap + 2);
                let n = arenas();
                println!("arenas: {n}");
                assert!(n > cap, "only {n} arenas without the cap of {cap}");
            }
            Err(_) => {
                run_child("capped");
                run_child("uncapped");
            }
        }
    }
}
