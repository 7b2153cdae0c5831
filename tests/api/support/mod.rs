//! Test support that needs more than the app: moto's EC2/Auto Scaling server.

pub mod moto;
