//! The `pgmetal` binary: CRD printing, the SSH convergence CLI and the operator.

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "pgmetal",
    version,
    about = "Highly-available PostgreSQL on bare metal, declaratively"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the PostgresCluster CustomResourceDefinition as YAML.
    Crd,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Crd => {
            print!("{}", pgmetal::crd_yaml());
            std::process::ExitCode::SUCCESS
        }
    }
}
