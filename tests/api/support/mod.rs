//! Test support that needs more than the app: moto's EC2/Auto Scaling server and what the
//! AWS tests share, the example provider of the provider protocol, Python packages from PyPI
//! in venvs, and headless Chromium.

pub mod aws;
pub mod chromium;
pub mod example_provider;
pub mod moto;
pub mod pyvenv;
