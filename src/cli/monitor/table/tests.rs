use chrono::TimeZone;
use serde_json::json;

use super::*;

pub(crate) fn snapshot(alerts: bool) -> Snapshot {
    let long = "a-strategy-name-much-longer-than-its-column";
    serde_json::from_value(json!({
        "last_event_id": 42, "window_hours": 24,
        "strategies": [
            {"name": "sim-primary", "type": "simulated", "enabled": true, "health": "healthy",
             "circuit": "closed", "circuit_mode": "auto", "in_flight": 1, "operations": 40,
             "success_rate": 97.5, "p95_ms": 12.345, "last_error": null},
            {"name": long, "type": "simulated", "enabled": false, "health": "unknown",
             "circuit": "open", "circuit_mode": "forced_open", "in_flight": 0, "operations": 0,
             "success_rate": null, "p95_ms": null,
             "last_error": "PROVIDER_ERROR: the simulator failed\non two lines"},
        ],
        "alerts": if alerts { json!([
            {"id": 3, "rule": "circuit-open", "condition": "circuit_open", "strategy": long,
             "message": "circuit is open", "raised_at": "2026-11-30T14:00:00.000Z",
             "cleared_at": null, "clear_message": null},
        ]) } else { json!([]) },
        "requests": [
            {"request_id": "req-1", "kind": "acquire", "template_id": "web", "state": "in_progress",
             "message": "1 of 3 machine(s) ready.", "machines": 3, "machines_by_state": {"running": 2, "pending": 1},
             "created_at": "2026-11-30T13:59:00Z"},
        ],
    }))
    .expect("a snapshot")
}

fn at() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 30, 14, 5, 0).unwrap()
}

#[test]
fn strategy_rows_show_nulls_percentages_and_cut_names() {
    let [strategies, ..] = sections(&snapshot(true));
    assert_eq!(
        strategies.rows[0],
        [
            "sim-primary",
            "simulated",
            "yes",
            "healthy",
            "closed",
            "1",
            "40",
            "97.5%",
            "12 ms",
            "-"
        ]
    );
    assert_eq!(
        strategies.rows[1],
        [
            "a-strategy-name-much-lo…",
            "simulated",
            "no",
            "unknown",
            "open (forced)",
            "0",
            "0",
            "-",
            "-",
            "PROVIDER_ERROR: the simulator failed on two lin…",
        ]
    );
    assert_eq!(strategies.rows[1][0].chars().count(), 24);
}

#[test]
fn latencies_and_rates_read_at_a_glance() {
    assert_eq!(
        [millis(0.42), millis(9.99), millis(250.4), millis(12_345.0)],
        ["0.4 ms", "10.0 ms", "250 ms", "12.3 s"]
    );
    assert_eq!([percent(100.0), percent(0.0)], ["100.0%", "0.0%"]);
}

#[test]
fn requests_count_machines_by_state() {
    let [_, _, requests] = sections(&snapshot(false));
    assert_eq!(
        requests.rows,
        [[
            "req-1",
            "acquire",
            "web",
            "in_progress",
            "3",
            "pending 1, running 2",
            "2026-11-30 13:59:00Z"
        ]]
    );
}

#[test]
fn plain_text_has_fixed_columns_and_marks_empty_sections() {
    let text = plain("http://127.0.0.1:8000", &snapshot(false), at());
    assert!(!text.contains('\u{1b}'), "no escape codes");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        "ohfp monitor  http://127.0.0.1:8000  last event 42  at 2026-11-30 14:05:00Z  (numbers over 24 h)"
    );
    assert_eq!(lines[2], "STRATEGIES");
    let header = lines[3];
    assert!(header.starts_with("NAME  "), "{header}");
    // Each column starts where its title does: text on the left, numbers on the right.
    let health = header.find("HEALTH").unwrap();
    assert_eq!(&lines[4][health..health + 7], "healthy");
    let ops_end = header.find("OPS").unwrap() + 3;
    assert_eq!(&lines[4][ops_end - 2..ops_end], "40");
    assert!(
        lines.iter().all(|l| l.trim_end() == *l),
        "no trailing blanks"
    );
    let alerts = lines.iter().position(|l| *l == "ALERTS").unwrap();
    assert_eq!((lines[alerts - 1], lines[alerts + 1]), ("", EMPTY));
    assert!(text.contains("\n\nREQUESTS\nREQUEST "), "{text}");
}

#[test]
fn alerts_show_their_rule_strategy_and_time() {
    let [_, alerts, _] = sections(&snapshot(true));
    assert_eq!(
        alerts.rows,
        [[
            "circuit-open",
            "circuit_open",
            "a-strategy-name-much-lo…",
            "2026-11-30 14:00:00Z",
            "circuit is open"
        ]]
    );
}

#[test]
fn a_narrow_room_narrows_the_column_that_gives_way() {
    let [strategies, ..] = sections(&snapshot(false));
    let full = strategies.widths();
    let needed = full.iter().sum::<usize>() + 2 * (full.len() - 1);
    assert_eq!(strategies.widths_within(needed + 10), full);
    let narrow = strategies.widths_within(needed - 20);
    let last = full.len() - 1;
    assert_eq!(narrow[last], full[last] - 20, "LAST ERROR gives way");
    assert_eq!(narrow[..last], full[..last]);
    // Not enough even so: the columns on the right are cut at the edge.
    let cut = strategies.widths_within(40);
    assert_eq!(cut[..3], [24, 9, 3], "{cut:?}");
    assert!(cut[3..].iter().all(|w| *w == 0), "{cut:?}");
}
