//! The spot interruption warning from a recorded AWS answer: moto cannot put a spot request
//! in `marked-for-termination`, so a DescribeSpotInstanceRequests answer of the shape AWS
//! sends is served locally and read through the SDK's own parser.

use aws_sdk_ec2::config::{BehaviorVersion, Credentials, Region};

use super::spot_notice;

/// Serves `body` as the answer to every call; answers the address.
async fn serve(body: &'static str) -> String {
    let app = axum::Router::new()
        .fallback(move || async move { ([(axum::http::header::CONTENT_TYPE, "text/xml")], body) });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a loopback port");
    let addr = listener.local_addr().expect("its address");
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

#[tokio::test]
async fn a_marked_spot_request_gives_its_instance_two_minutes_from_the_status_time() {
    let url = serve(include_str!("describe_spot_instance_requests.xml")).await;
    let config = aws_sdk_ec2::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("eu-west-1"))
        .endpoint_url(url)
        .credentials_provider(Credentials::new("AKIDTEST", "secret", None, None, "test"))
        .build();
    let answer = aws_sdk_ec2::Client::from_conf(config)
        .describe_spot_instance_requests()
        .send()
        .await
        .expect("the recorded answer parses");
    let notices: Vec<_> = answer
        .spot_instance_requests()
        .iter()
        .filter_map(spot_notice)
        .collect();
    // 2026-11-30T21:04:10Z and 21:05:00Z, each plus 120 s; the fulfilled request is no notice.
    assert_eq!(
        notices,
        vec![
            (
                "i-0a1b2c3d4e5f60718",
                "spot request marked-for-termination: Your Spot Instance has been marked for \
                 termination because of EC2 capacity needs."
                    .to_string(),
                Some(1_796_072_650_000 + 120_000)
            ),
            (
                "i-0b2c3d4e5f6071829",
                "spot request marked-for-stop: Your Spot Instance has been marked for stop \
                 because of EC2 capacity needs."
                    .to_string(),
                Some(1_796_072_700_000 + 120_000)
            ),
        ]
    );
}
