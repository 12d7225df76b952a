//! The `tenantatlas` server binary: `serve`, `migrate`, `seed-demo` (see `--help`).

#[cfg(feature = "ssr")]
#[tokio::main]
async fn main() -> std::process::ExitCode {
    use clap::Parser;
    use tenantatlas::server::config::{Cli, LogFormat};
    use tenantatlas::server::{logging, sanitize::sanitize};
    use tracing_subscriber::util::SubscriberInitExt;

    let cli = Cli::parse();
    // Colours only for a person at a terminal, not in files and log collectors.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    match cli.log_format {
        LogFormat::Text => logging::subscriber(&cli.log, ansi, std::io::stdout).init(),
        LogFormat::Json => logging::json_subscriber(&cli.log, std::io::stdout).init(),
    }
    match tenantatlas::server::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error:#}");
            eprintln!("error: {}", sanitize(&error.to_string()));
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(not(feature = "ssr"))]
fn main() {
    // The browser bundle starts in lib.rs (`hydrate`); this binary is only useful with `ssr`.
}
