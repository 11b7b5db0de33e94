//! `sitfer buffer stats|reset|export`: look at, clear or dump the on-device instance buffer that
//! `sitfer run --buffer FILE` grows from confident frames.

use super::bundle_arg;
use anyhow::{Context, Result};
use sitfer_runtime::file_write::atomic_write_bytes;
use sitfer_runtime::instance_buffer::{InstanceBuffer, MAX_QUEUE_PER_CLASS, space_id};
use sitfer_runtime::labels::{ALL, NUM_CLASSES};
use sitfer_runtime::online::head_path;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct BufferArgs {
    #[command(subcommand)]
    pub action: BufferAction,
    /// The buffer file (`sitfer run --buffer`).
    #[arg(long, global = true)]
    pub buffer: Option<PathBuf>,
    /// The bundle the buffer belongs to (default: the embedded one).
    #[arg(long, global = true)]
    pub bundle: Option<PathBuf>,
}

#[derive(clap::Subcommand, Debug)]
pub enum BufferAction {
    /// Entries per class: the bundle's seed and what the device added.
    Stats,
    /// Forget what the device learned: the added entries (the bundle's seed stays; the file is
    /// rewritten atomically) and the online refit's head file beside it (removed).
    Reset,
    /// The added entries as JSON lines `{"class": name, "embedding": [...]}`.
    Export {
        /// Output file (`-` for standard output).
        #[arg(long, default_value = "-")]
        out: String,
    },
}

pub fn buffer(a: BufferArgs) -> Result<()> {
    let path = a
        .buffer
        .clone()
        .context("--buffer FILE: the buffer file that `sitfer run --buffer` writes")?;
    let (bundle, _) = bundle_arg::open(a.bundle.as_deref(), None)?;
    let space = space_id(&bundle.manifest);
    // The largest capacity, so that loading keeps every saved entry.
    let mut buf = InstanceBuffer::from_seed(&bundle.buffer, MAX_QUEUE_PER_CLASS);
    buf.load(&path, &space)?;
    match a.action {
        BufferAction::Stats => {
            let (seed, queued) = (buf.seed_counts(), buf.queued_counts());
            println!("buffer {} (embedding dim {})", path.display(), buf.dim());
            println!("| class | seed | added |");
            println!("|---|---|---|");
            for c in 0..NUM_CLASSES {
                println!("| {} | {} | {} |", ALL[c].name(), seed[c], queued[c]);
            }
            println!(
                "| total | {} | {} |",
                seed.iter().sum::<usize>(),
                queued.iter().sum::<usize>()
            );
        }
        BufferAction::Reset => {
            let added: usize = buf.queued_counts().iter().sum();
            buf.reset_queues();
            buf.save(&path, &space)?;
            println!(
                "{}: {added} added entries removed, the bundle's seed kept",
                path.display()
            );
            // After the buffer is rewritten: a kill in between leaves the emptied buffer beside
            // the old head, and running reset again removes it.
            let head = head_path(&path);
            match std::fs::remove_file(&head) {
                Ok(()) => println!("{}: refitted head removed", head.display()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e).with_context(|| format!("removing {}", head.display())),
            }
        }
        BufferAction::Export { out } => {
            let mut text = String::new();
            for (c, e) in ALL.iter().enumerate() {
                for z in buf.queued(c) {
                    text.push_str(&serde_json::json!({"class": e.name(), "embedding": z}).to_string());
                    text.push('\n');
                }
            }
            if out == "-" {
                print!("{text}");
            } else {
                atomic_write_bytes(std::path::Path::new(&out), text.as_bytes()).with_context(|| out.clone())?;
            }
        }
    }
    Ok(())
}
