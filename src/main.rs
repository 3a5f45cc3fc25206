//! The `idch-autoscaler` binary: thin; parses the command line and hands over to the library.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use idch_autoscaler::{check, demo, sim, startup, telemetry, workload};

#[derive(Parser)]
#[command(
    name = "idch-autoscaler",
    version,
    about = "Horizontal autoscaling for IDCloudHost VMs behind Traefik"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the service. Without --config: the embedded default (a built-in simulator and one pool).
    Run {
        #[arg(long, short = 'c')]
        config: Option<PathBuf>,
        /// Plan and record every step (activity outcome `dry_run`, GET /v1/pools/{pool}/plan)
        /// without taking any: the only cloud calls are reads. Needs --config.
        #[arg(long, requires = "config")]
        dry_run: bool,
    },
    /// Validate a configuration file: exit 0 when good, non-zero naming the bad key and why.
    /// With --rules, also parse Prometheus alert rule files and warn (stderr, exit code unchanged)
    /// about rules that invite thrashing; a rule file that does not parse is an error.
    Check {
        #[arg(long, short = 'c')]
        config: PathBuf,
        /// A Prometheus rule file with the scale-up/scale-down alerts (label `autoscale: up|down`,
        /// or ScaleUp/ScaleDown in the alert name). Repeatable.
        #[arg(long = "rules", value_name = "FILE")]
        rules: Vec<PathBuf>,
    },
    /// Run the built-in IDCloudHost API simulator alone.
    Sim(sim::SimArgs),
    /// Run the sample workload (what each simulated VM serves).
    Calculate(workload::CalculateArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let command = cli.command.unwrap_or(Command::Run {
        config: None,
        dry_run: false,
    });
    if let Command::Check { config, rules } = &command {
        let code = check::config_command(config);
        if rules.is_empty() || check::rules::check_command(rules) {
            return code;
        }
        return std::process::ExitCode::from(2);
    }
    telemetry::init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match command {
            Command::Run { config: None, .. } => demo::run().await,
            Command::Run {
                config: Some(path),
                dry_run,
            } => startup::run_from_file_with(&path, startup::RunOptions { dry_run }).await,
            Command::Sim(args) => sim::run(args).await,
            Command::Calculate(args) => workload::run(args).await,
            Command::Check { .. } => unreachable!("handled above"),
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
