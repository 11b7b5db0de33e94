//! `sitfer`: the edge runtime's command line.

use anyhow::Result;
use clap::{Parser, Subcommand};
use sitfer_runtime::labels::ALL;

#[derive(Parser)]
#[command(
    name = "sitfer",
    version,
    about = "sitfer edge runtime for facial expression recognition"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the canonical label set, one `index name` per line.
    Labels,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Labels => {
            for e in ALL {
                println!("{} {}", e.index(), e.name());
            }
        }
    }
    Ok(())
}
