//! Test support that needs more than the app: moto's EC2/Auto Scaling server and what the
//! AWS tests share, and the example provider of the provider protocol.

pub mod aws;
pub mod example_provider;
pub mod moto;
