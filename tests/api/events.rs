//! Events kept in the store: listed with filters, followed live, and replayed to a follower
//! that reconnects with `Last-Event-ID`, also across a restart.

use serde_json::{Value, json};

use crate::helpers::{PATIENCE, TestApp, eventually, execute};
use crate::hostfactory::{hf_app, request_machines};

fn health_check_on(strategy: &str) -> Value {
    json!({"operation_type": "HEALTH_CHECK", "strategy_override": strategy})
}

/// The kept events `query` lists, once at least `want` are there.
async fn listed(app: &TestApp, query: &str, want: usize) -> Vec<Value> {
    eventually(&format!("{want} events for {query}"), || async {
        let (status, v) = app.get(&format!("/api/v1/events?{query}")).await;
        assert_eq!(status, 200, "{v}");
        let events = v["events"].as_array().cloned().unwrap_or_default();
        (events.len() >= want).then_some(events)
    })
    .await
}

fn ids(events: &[Value]) -> Vec<u64> {
    events.iter().map(|e| e["id"].as_u64().unwrap()).collect()
}

/// A follower of the live stream, reading whole SSE events.
struct Follower {
    res: reqwest::Response,
    buffer: String,
}

impl Follower {
    async fn connect(app: &TestApp, query: &str, last_event_id: Option<u64>) -> Self {
        Self::open(app, &format!("/api/v1/events/stream{query}"), last_event_id).await
    }

    async fn open(app: &TestApp, path: &str, last_event_id: Option<u64>) -> Self {
        let mut req = app.client.get(app.url(path));
        if let Some(id) = last_event_id {
            req = req.header("Last-Event-ID", id.to_string());
        }
        let res = req.send().await.unwrap();
        assert_eq!(res.status(), 200);
        Self {
            res,
            buffer: String::new(),
        }
    }

    /// The next event: its SSE id and its data.
    async fn next(&mut self) -> (u64, Value) {
        self.next_or_end().await.expect("the stream goes on")
    }

    /// Every event until the server closes the stream.
    async fn until_closed(&mut self) -> Vec<Value> {
        let mut seen = Vec::new();
        while let Some((_, e)) = self.next_or_end().await {
            seen.push(e);
        }
        seen
    }

    /// The next event, or `None` when the server closed the stream.
    async fn next_or_end(&mut self) -> Option<(u64, Value)> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let field = |name: &str| {
                    block
                        .lines()
                        .find_map(|l| l.strip_prefix(name))
                        .map(|v| v.trim().to_string())
                };
                // Keep-alive comments carry neither.
                if let (Some(id), Some(data)) = (field("id:"), field("data:")) {
                    let event: Value = serde_json::from_str(&data).unwrap();
                    let id: u64 = id.parse().unwrap();
                    assert_eq!(event["id"], id, "the SSE id is the event id");
                    return Some((id, event));
                }
                continue;
            }
            let chunk = tokio::time::timeout(PATIENCE, self.res.chunk())
                .await
                .expect("an event within the patience")
                .unwrap()?;
            self.buffer.push_str(&String::from_utf8_lossy(&chunk));
        }
    }

    /// Events until (and with) id `last`.
    async fn until(&mut self, last: u64) -> Vec<(u64, Value)> {
        let mut seen = Vec::new();
        loop {
            let (id, e) = self.next().await;
            seen.push((id, e));
            if id >= last {
                return seen;
            }
        }
    }
}

#[tokio::test]
async fn events_are_kept_and_listed_with_filters() {
    let app = TestApp::spawn().await;
    for _ in 0..3 {
        execute(&app, health_check_on("sim-primary")).await;
    }
    execute(&app, health_check_on("sim-secondary")).await;
    let ops = listed(&app, "kind=operation&strategy=sim-primary", 3).await;
    assert_eq!(ops.len(), 3, "{ops:?}");
    for e in &ops {
        assert_eq!(e["kind"], "operation");
        assert_eq!(e["strategy"], "sim-primary");
        assert_eq!(e["detail"]["operation_type"], "HEALTH_CHECK");
    }
    let all = listed(&app, "kind=operation", 4).await;
    let newest = listed(&app, "kind=operation&limit=2", 2).await;
    assert_eq!(ids(&newest), ids(&all)[2..], "the newest two, oldest first");
    let first = ids(&all)[0];
    let after = listed(&app, &format!("kind=operation&after={first}&limit=2"), 2).await;
    assert_eq!(ids(&after), ids(&all)[1..3], "paging forward from an id");
    let (status, v) = app.get("/api/v1/events?since=2999-01-01T00:00:00Z").await;
    assert_eq!((status, v["count"].clone()), (200, json!(0)));
    for (query, field) in [
        ("kind=selections", "kind"),
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("since=yesterday", "since"),
    ] {
        let (status, v) = app.get(&format!("/api/v1/events?{query}")).await;
        assert_eq!(status, 422, "{query}: {v}");
        assert!(v.to_string().contains(field), "{query} names {field}: {v}");
    }
    let res = app
        .client
        .get(app.url("/api/v1/events/stream"))
        .header("Last-Event-ID", "soon")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 422);
    app.stop().await;
}

#[tokio::test]
async fn a_follower_that_reconnects_with_last_event_id_misses_nothing() {
    let app = TestApp::spawn().await;
    let mut follower = Follower::connect(&app, "?kind=operation", None).await;
    execute(&app, health_check_on("sim-primary")).await;
    let (seen, first) = follower.next().await;
    assert_eq!(first["kind"], "operation");
    drop(follower);
    // Missed while away: operations of both strategies and selections (filtered out below).
    for i in 0..6 {
        let strategy = if i % 2 == 0 {
            "sim-primary"
        } else {
            "sim-secondary"
        };
        execute(&app, health_check_on(strategy)).await;
        execute(&app, json!({"operation_type": "HEALTH_CHECK"})).await;
    }
    let missed = listed(&app, &format!("kind=operation&after={seen}"), 12).await;
    let mut back = Follower::connect(&app, "?kind=operation", Some(seen)).await;
    let replayed = back.until(*ids(&missed).last().unwrap()).await;
    let replayed_ids: Vec<u64> = replayed.iter().map(|(id, _)| *id).collect();
    assert_eq!(
        replayed_ids,
        ids(&missed),
        "every missed operation, in order, once"
    );
    // And then the live ones.
    execute(&app, health_check_on("sim-secondary")).await;
    let (next, live) = back.next().await;
    assert!(next > *replayed_ids.last().unwrap());
    assert_eq!(live["strategy"], "sim-secondary");
    drop(back);
    app.stop().await;
}

#[tokio::test]
async fn kept_events_survive_a_restart_and_ids_go_on() {
    let app = TestApp::spawn().await;
    execute(&app, health_check_on("sim-primary")).await;
    execute(&app, health_check_on("sim-primary")).await;
    let before = listed(&app, "kind=operation", 2).await;
    let db = app.db.clone();
    let dir = app.stop().await;
    let app = TestApp::start(crate::helpers::test_config(&db)).await;
    // Nothing is in memory after the restart: the replay comes from the store.
    let first = ids(&before)[0];
    let mut follower = Follower::connect(&app, "?strategy=sim-primary", Some(first)).await;
    execute(&app, health_check_on("sim-primary")).await;
    let after = listed(&app, "kind=operation", 3).await;
    let newest = *ids(&after).last().unwrap();
    assert!(newest > ids(&before)[1], "ids continue after a restart");
    let seen: Vec<u64> = follower
        .until(newest)
        .await
        .iter()
        .map(|(id, _)| *id)
        .collect();
    assert!(seen[0] > first);
    assert!(seen.contains(&ids(&before)[1]), "{seen:?}");
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "{seen:?}");
    drop(follower);
    app.stop().await;
    drop(dir);
}

#[tokio::test]
async fn hostfactory_requests_are_events() {
    let hf = hf_app(0.2).await;
    let app = &hf.app;
    let id = request_machines(app, "OnDemand-C5Large", 1).await;
    let accepted = listed(app, "kind=request_accepted", 1).await;
    assert_eq!(accepted[0]["detail"]["request_id"], id.as_str());
    assert_eq!(accepted[0]["detail"]["request_kind"], "acquire");
    let completed = listed(app, "kind=request_completed", 1).await;
    assert_eq!(completed[0]["detail"]["request_id"], id.as_str());
    assert!(completed[0]["strategy"].is_string(), "{completed:?}");
    hf.app.stop().await;
}

/// What a request's stream says, in order: each event's kind and what it tells.
fn progress(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| {
            let d = &e["detail"];
            match e["kind"].as_str().unwrap() {
                "request_state" => format!("request_state {} {}", d["state"], d["status"]),
                "machine_state" => format!("machine_state {} {}", d["machine_id"], d["state"]),
                kind => kind.to_string(),
            }
        })
        .collect()
}

#[tokio::test]
async fn a_request_is_followed_from_accepted_to_complete() {
    // Machines boot for a second: the follower is there before they run.
    let hf = hf_app(1.0).await;
    let app = &hf.app;
    let id = request_machines(app, "OnDemand-C5Large", 2).await;
    let path = format!("/api/v1/requests/{id}/events");
    let events = Follower::open(app, &path, None).await.until_closed().await;
    let seen = progress(&events);
    assert_eq!(seen[0], "request_accepted", "{seen:#?}");
    assert_eq!(
        seen.last().unwrap(),
        r#"request_state "done" "complete""#,
        "ends with the request complete: {seen:#?}"
    );
    assert!(seen.contains(&r#"request_state "provisioning" "running""#.to_string()));
    let (status, view) = app.get(&format!("/api/v1/requests/{id}")).await;
    assert_eq!(
        (status, &view["status"]),
        (200, &json!("complete")),
        "{view}"
    );
    for m in view["machines"].as_array().unwrap() {
        let machine = &m["machine_id"];
        let states: Vec<&String> = seen
            .iter()
            .filter(|s| s.starts_with(&format!("machine_state {machine} ")))
            .collect();
        assert_eq!(
            states,
            [
                &format!(r#"machine_state {machine} "pending""#),
                &format!(r#"machine_state {machine} "running""#)
            ],
            "{seen:#?}"
        );
    }
    assert!(
        events
            .iter()
            .all(|e| e["detail"]["request_id"] == id.as_str())
    );

    // After the end: the kept events at once, then the end; and from an id, the rest.
    let again = Follower::open(app, &path, None).await.until_closed().await;
    assert_eq!(again, events, "the same events, kept");
    let second = events[1]["id"].as_u64().unwrap();
    let rest = Follower::open(app, &path, Some(second))
        .await
        .until_closed()
        .await;
    assert_eq!(rest, events[2..]);

    let (status, v) = app.get("/api/v1/requests/req-nope/events").await;
    assert_eq!(status, 404, "{v}");
    hf.app.stop().await;
}
