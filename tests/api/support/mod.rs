//! Test support that needs more than the app: moto's EC2/Auto Scaling server and what the
//! AWS tests share, the example provider of the provider protocol, Python packages from PyPI
//! in venvs, Debian packages (headless Chromium, tmux, PostgreSQL) and a throwaway PostgreSQL
//! cluster.

pub mod aws;
pub mod chromium;
pub mod debian;
pub mod example_provider;
pub mod moto;
pub mod postgres;
pub mod pyvenv;

/// A loopback port that was free a moment ago (the server started on it may still lose a race).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}
