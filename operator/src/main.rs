//! The `pgmetal` binary: CRD printing, the SSH convergence CLI and the operator.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use pgmetal::cli;

#[derive(Parser)]
#[command(
    name = "pgmetal",
    version,
    about = "Highly-available PostgreSQL (Patroni + etcd + HAProxy) on bare metal, declaratively"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the PostgresCluster CustomResourceDefinition as YAML.
    Crd,
    /// Converge the hosts of a cluster.yaml over SSH (no Kubernetes needed).
    Apply {
        #[command(flatten)]
        common: cli::Common,
        /// No progress output.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Run the Kubernetes operator (reconciles PostgresCluster resources).
    Operator {
        #[command(flatten)]
        opts: pgmetal::controller::Options,
    },
    /// Print the topology steps `apply` would take against the live hosts (read-only).
    Plan {
        #[command(flatten)]
        common: cli::Common,
    },
    /// Print the cluster's Prometheus scrape targets as a file_sd JSON document (reads only the
    /// manifest): save it where a `file_sd_configs` entry of your Prometheus looks.
    Targets {
        /// The PostgresCluster manifest.
        #[arg(short = 'f', long = "filename")]
        file: std::path::PathBuf,
    },
    /// Show members, etcd and HAProxy routing of a cluster.yaml (like patronictl list).
    Status {
        #[command(flatten)]
        common: cli::Common,
    },
    /// The kubectl plugin: what `kubectl pgmetal` runs when this binary is installed as
    /// `kubectl-pgmetal` on the PATH. Acts through the API server only.
    Kubectl(cli::kubectl::Plugin),
}

#[tokio::main]
async fn main() -> ExitCode {
    let result = if cli::kubectl::invoked_as_plugin() {
        cli::kubectl::run(cli::kubectl::PluginCli::parse().plugin).await
    } else {
        run(Cli::parse()).await
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(2),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs one `pgmetal` command; `Ok(false)` when the cluster is not healthy.
async fn run(cli: Cli) -> Result<bool, String> {
    match cli.command {
        Command::Crd => {
            print!("{}", pgmetal::crd_yaml());
            Ok(true)
        }
        Command::Apply { common, quiet } => cli::apply(&common, quiet).await,
        Command::Status { common } => cli::status(&common).await,
        Command::Plan { common } => cli::plan(&common).await,
        Command::Targets { file } => cli::targets(&file),
        Command::Kubectl(plugin) => cli::kubectl::run(plugin).await,
        Command::Operator { opts } => pgmetal::controller::run(opts)
            .await
            .map(|()| true)
            .map_err(|e| e.to_string()),
    }
}
