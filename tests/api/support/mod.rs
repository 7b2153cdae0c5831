//! Test support that needs more than the app: moto's EC2/Auto Scaling server and what the
//! AWS tests share, Python packages from PyPI in venvs.

pub mod aws;
pub mod moto;
pub mod pyvenv;
