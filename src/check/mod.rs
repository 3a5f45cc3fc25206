//! `idch-autoscaler check`: validates a configuration (`--config`) and warns about
//! thrash-prone alert rules (`--rules`).

pub mod rules;
pub mod target;

use std::path::Path;
use std::process::ExitCode;

/// `idch-autoscaler check --config FILE`: exit 0 when `run --config FILE` would start (as far as
/// can be known without opening the state file or binding the port), otherwise exit 2 with the
/// same reason `run` gives. Applies [`crate::startup::prepare`], so it needs the service's
/// environment (the `*_env` secrets) just as `run` does.
pub fn config_command(path: &Path) -> ExitCode {
    match crate::startup::prepare(path) {
        Ok((config, _secrets)) => {
            let names: Vec<&str> = config.pools.iter().map(|p| p.name.as_str()).collect();
            println!(
                "{}: ok ({} pool{}: {})",
                path.display(),
                names.len(),
                if names.len() == 1 { "" } else { "s" },
                names.join(", ")
            );
            for warning in target::warnings(&config) {
                eprintln!("{}: warning: {warning}", path.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{}: error: {e:#}", path.display());
            ExitCode::from(2)
        }
    }
}
