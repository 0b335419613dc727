//! `massa`: parse configuration, start logging, run.

use std::process::ExitCode;

use massa::config::{Config, LoadError};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Opts the process out of transparent huge pages. mimalloc advises its
/// arenas `MADV_HUGEPAGE`, so each 2 MiB region it touches is backed by a
/// whole huge page: 14 of the 15 MiB of anonymous memory of an idle proxy
/// (BENCHMARKS.md §10). It runs as a constructor ordered before mimalloc's
/// own (which already touches its arena), so no huge page is ever faulted.
/// Failure (a kernel without the call) only costs that memory.
#[used]
#[link_section = ".init_array.00200"]
static DISABLE_TRANSPARENT_HUGE_PAGES: extern "C" fn() = {
    extern "C" fn disable() {
        // SAFETY: PR_SET_THP_DISABLE takes integer arguments and touches no memory of ours.
        unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
    }
    disable
};

/// Exit status for configuration errors (EX_USAGE).
const EXIT_CONFIG: u8 = 64;

fn main() -> ExitCode {
    let config = match Config::load(std::env::args_os()) {
        Ok(c) => c,
        Err(LoadError::Clap(e)) if !e.use_stderr() => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("massa: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    massa::telemetry::init(config.log_format);
    match massa::run(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("massa: {e}");
            ExitCode::FAILURE
        }
    }
}
