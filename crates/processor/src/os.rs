//! What the processor asks of the operating system: allocator tuning, CPU clocks, peak memory,
//! a thread to free memory on.

use std::fs::File;
use std::path::Path;
use std::time::Duration;

use crate::error::{IoContext, Result};

/// Keeps freed batch buffers in the heap for the next batch instead of returning them to the
/// kernel: glibc otherwise maps every large buffer anew, and the page faults of touching fresh
/// memory cost more than the work done in it. Peak memory is unchanged (the next batch needs it),
/// as long as all threads share few arenas.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    unsafe {
        const M_TRIM_THRESHOLD: libc::c_int = -1;
        const M_MMAP_THRESHOLD: libc::c_int = -3;
        const M_ARENA_MAX: libc::c_int = -8;
        libc::mallopt(M_MMAP_THRESHOLD, 512 << 20);
        // Every batch spawns its layer and commit threads anew; with glibc's default of up to
        // 8 arenas per core each would keep its own batch-sized free memory (peak RSS 550–620
        // MiB end to end instead of ~300).
        libc::mallopt(M_ARENA_MAX, 2);
        libc::mallopt(M_TRIM_THRESHOLD, 1 << 30);
    }
}

/// CPU time of the calling thread (for debug timings).
pub fn thread_cpu() -> Duration {
    cpu_clock(libc::CLOCK_THREAD_CPUTIME_ID)
}

/// CPU time of the whole process, every thread, user and system (for benchmarks).
pub fn process_cpu() -> Duration {
    cpu_clock(libc::CLOCK_PROCESS_CPUTIME_ID)
}

fn cpu_clock(clock: libc::clockid_t) -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec to write into.
    if unsafe { libc::clock_gettime(clock, &mut ts) } != 0 {
        return Duration::ZERO;
    }
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Peak resident memory of this process (Linux `VmHWM`), in KiB.
pub fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Makes a rename in `dir` durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .io_context(|| format!("cannot sync folder {}", dir.display()))
}

/// Drops `value` on a thread of its own: freeing a batch's many small allocations (its window
/// rows, the windows the watermark closed) is then off the batch's path. When no thread can
/// start, the value is dropped here.
pub fn drop_aside<T: Send + 'static>(value: T) {
    let _ = std::thread::Builder::new()
        .name("drop".into())
        .spawn(move || drop(value));
}
