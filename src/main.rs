use std::process::ExitCode;

use clap::Parser;
use ohfp::cli::{Cli, Command, print_line};

// mimalloc rather than glibc's malloc: with it the JSON routes answer 30-50% more calls a
// second in benches/load.sh (allocation was the largest user-space cost in their profiles).
// Without transparent huge pages (`no_thp`): with them its eagerly committed arenas added
// about 20 MiB to the idle RSS.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let code = match cli.command {
        Command::Serve(args) => match ohfp::run::serve(args).await {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("ohfp: {e:#}");
                1
            }
        },
        Command::CheckConfig { files } => ohfp::run::check_config(&files),
        Command::Openapi { provider_protocol } => {
            if provider_protocol {
                print_line(ohfp::providers::http::protocol::openapi_json());
            } else {
                print_line(ohfp::run::openapi_json());
            }
            0
        }
        Command::Backup(args) => ohfp::run::backup(args).await,
        Command::ProviderCheck(args) => ohfp::cli::provider_check(args).await,
        Command::Monitor(args) => ohfp::cli::monitor(args).await,
        Command::Client(cmd) => ohfp::cli::run_client(cmd).await,
    };
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}
