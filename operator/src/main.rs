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
    /// Show members, etcd and HAProxy routing of a cluster.yaml (like patronictl list).
    Status {
        #[command(flatten)]
        common: cli::Common,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Crd => {
            print!("{}", pgmetal::crd_yaml());
            Ok(true)
        }
        Command::Apply { common, quiet } => cli::apply(&common, quiet).await,
        Command::Status { common } => cli::status(&common).await,
        Command::Operator { opts } => pgmetal::controller::run(opts)
            .await
            .map(|()| true)
            .map_err(|e| e.to_string()),
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
