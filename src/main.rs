//! `massa`: parse configuration, start logging, run.

use std::process::ExitCode;

use massa::config::{Config, LoadError};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
