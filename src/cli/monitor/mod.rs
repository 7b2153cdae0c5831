//! `ohfp monitor`: the status page in a terminal. `--once` prints the snapshot
//! (`GET /api/v1/status`) as plain tables and exits; without it a full-screen view follows the
//! event stream and fetches the snapshot again when something happens.

mod snapshot;
mod stream;
mod table;
mod tui;

use std::time::Duration;

use clap::Args;
use reqwest::Method;

pub use snapshot::Snapshot;

use super::client::{
    EXIT_REJECTED, EXIT_UNREACHABLE, http_client, request, send_to_first_reachable, shown_body,
    unreachable,
};

/// A snapshot taking longer than this is given up (and tried again by the full-screen view).
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Args)]
pub struct MonitorArgs {
    /// Print the status once as plain-text tables and exit (for scripts).
    #[arg(long)]
    pub once: bool,
    /// Service address; several replicas' separated by commas and/or spaces, tried in order
    /// until one is reached.
    #[arg(long, env = "OHFP_URL", default_value = "http://127.0.0.1:8000")]
    pub url: String,
    /// Bearer token, for a service that protects reads.
    #[arg(long, env = "OHFP_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

/// Why there is no snapshot to show.
#[derive(Debug, Clone, PartialEq)]
pub enum FetchError {
    Unreachable(String),
    /// The service answered an error: its status and the body as shown to a person.
    Rejected(reqwest::StatusCode, String),
    /// The answer is not a snapshot.
    Unreadable(String),
}

impl FetchError {
    /// One line, for the full-screen view's header.
    pub fn summary(&self) -> String {
        match self {
            FetchError::Unreachable(why) | FetchError::Unreadable(why) => why.clone(),
            FetchError::Rejected(status, _) => format!("the status snapshot answered {status}"),
        }
    }
}

/// What the full-screen view's loop hears from its helpers.
#[derive(Debug)]
pub enum Msg {
    /// The event stream is open.
    Connected,
    /// The event stream dropped (why); it is opened again shortly.
    Disconnected(String),
    /// An event arrived: the snapshot is out of date.
    Changed,
    Fetched(Box<Result<Snapshot, FetchError>>),
    /// A key or a resize from the terminal, or why it could not be read.
    Input(std::io::Result<ratatui::crossterm::event::Event>),
}

/// One snapshot from the service, typed; an error says whether it was reached.
pub async fn fetch(client: &reqwest::Client, args: &MonitorArgs) -> Result<Snapshot, FetchError> {
    let (res, base) = send_to_first_reachable(&args.url, |base| {
        request(
            client,
            Method::GET,
            base,
            "/api/v1/status",
            args.token.as_deref(),
        )
        .timeout(FETCH_TIMEOUT)
    })
    .await
    .map_err(FetchError::Unreachable)?;
    let status = res.status();
    if !status.is_success() {
        return Err(FetchError::Rejected(status, shown_body(res).await));
    }
    let text = res
        .text()
        .await
        .map_err(|e| FetchError::Unreachable(unreachable(base, &e)))?;
    serde_json::from_str(&text)
        .map_err(|e| FetchError::Unreadable(format!("the status snapshot is not readable: {e}")))
}

/// Runs the monitor; answers the exit code (as the client commands': 1 the service answered an
/// error, 2 no terminal for the full-screen view, 3 the service could not be reached).
pub async fn run(args: MonitorArgs) -> i32 {
    if !args.once {
        return tui::run(args).await;
    }
    match fetch(&http_client(), &args).await {
        Ok(s) => {
            super::print_line(table::plain(&args.url, &s, chrono::Utc::now()));
            0
        }
        Err(FetchError::Unreachable(why)) => {
            eprintln!("ohfp: {why}");
            EXIT_UNREACHABLE
        }
        Err(FetchError::Rejected(_, body)) => {
            eprintln!("{body}");
            EXIT_REJECTED
        }
        Err(FetchError::Unreadable(why)) => {
            eprintln!("ohfp: {why}");
            EXIT_REJECTED
        }
    }
}
