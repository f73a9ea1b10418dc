//! The `pocketbrain` binary: parse flags, set up logging, run the command.

use std::process::ExitCode;

use pocketbrain::cli::{Cli, run};
use pocketbrain::config::LogFormat;

/// Our own lines at info; the WhatsApp library's reconnect chatter only
/// when it is an error (the link's state changes are logged by the bridge,
/// one line each, with their health code). `PB_LOG` replaces this.
const DEFAULT_LOG: &str = "info,whatsapp_rust=error,wacore=error,waproto=error";

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse_args();
    let filter = tracing_subscriber::EnvFilter::try_from_env("PB_LOG")
        .unwrap_or_else(|_| DEFAULT_LOG.into());
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match cli.config.log_format {
        // One JSON object per line: time, level, target, message, fields.
        LogFormat::Json => logs.json().with_current_span(false).init(),
        LogFormat::Human => logs
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
    }
    run(cli).await
}
