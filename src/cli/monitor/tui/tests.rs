use ratatui::Terminal;
use ratatui::backend::TestBackend;

use super::*;
use crate::cli::monitor::table::tests::snapshot;

/// The screen `view` draws on a terminal `width` wide and 30 high, as lines of text.
fn screen(view: &View, width: u16) -> Vec<String> {
    let mut terminal = Terminal::new(TestBackend::new(width, 30)).expect("a test terminal");
    terminal.draw(|f| draw(f, view)).expect("drawn");
    let buffer = terminal.backend().buffer();
    (0..buffer.area.height)
        .map(|y| {
            (0..buffer.area.width)
                .map(|x| buffer[(x, y)].symbol())
                .collect::<String>()
        })
        .collect()
}

#[test]
fn the_screen_shows_the_header_and_three_tables() {
    let mut view = View::new("http://127.0.0.1:8000".into());
    view.fetched(Ok(snapshot(false)));
    view.link = Link::Retrying("the event stream ended".into());
    let lines = screen(&view, 160);
    assert!(
        lines[0].starts_with("ohfp monitor  http://127.0.0.1:8000  last event 42  at "),
        "{lines:#?}"
    );
    assert!(
        lines[1].starts_with("q: quit  events: disconnected, retrying (the event stream ended)"),
        "{lines:#?}"
    );
    let text = lines.join("\n");
    for expected in [
        "STRATEGIES (2)",
        "ALERTS (0)",
        "(none)",
        "REQUESTS (1)",
        "pending 1, running 2",
    ] {
        assert!(text.contains(expected), "{expected} in\n{text}");
    }
    // The rows are the same cells as --once prints, in the same columns.
    let row = lines.iter().find(|l| l.contains("sim-primary")).unwrap();
    let header = lines.iter().find(|l| l.contains("NAME")).unwrap();
    assert_eq!(
        row.find("healthy"),
        header.find("HEALTH"),
        "{header}\n{row}"
    );
    assert!(text.contains("open (forced)"));
}

#[test]
fn on_a_narrow_screen_the_message_columns_give_way() {
    let mut view = View::new("http://127.0.0.1:8000".into());
    view.fetched(Ok(snapshot(false)));
    let lines = screen(&view, 80);
    let request = lines.iter().find(|l| l.contains("req-1")).unwrap();
    assert!(
        request.contains("in_progress") && request.contains("2026-11-30 13:59:00Z"),
        "{lines:#?}"
    );
    assert!(!request.contains("pending 1, running 2"), "{request}");
    // Too wide even so: the columns on the right are left out, the names stay whole.
    let strategy = lines.iter().find(|l| l.contains("sim-primary")).unwrap();
    assert!(strategy.contains("healthy  closed"), "{strategy}");
    assert!(!strategy.contains("12 ms"), "{strategy}");
}

#[test]
fn before_the_first_snapshot_the_screen_says_so_and_a_failure_is_shown() {
    let mut view = View::new("http://127.0.0.1:9".into());
    view.fetched(Err(FetchError::Unreachable(
        "cannot reach the service".into(),
    )));
    let lines = screen(&view, 100);
    assert!(
        lines[0].contains("waiting for the first snapshot"),
        "{lines:#?}"
    );
    assert!(
        lines[1].contains("q: quit  events: connecting  snapshot: cannot reach the service"),
        "{lines:#?}"
    );
}

#[test]
fn q_escape_and_ctrl_c_quit() {
    use ratatui::crossterm::event::KeyEvent;
    let key = |code, modifiers| Event::Key(KeyEvent::new(code, modifiers));
    assert!(quits(&key(KeyCode::Char('q'), KeyModifiers::NONE)));
    assert!(quits(&key(KeyCode::Esc, KeyModifiers::NONE)));
    assert!(quits(&key(KeyCode::Char('c'), KeyModifiers::CONTROL)));
    assert!(!quits(&key(KeyCode::Char('c'), KeyModifiers::NONE)));
    assert!(!quits(&Event::Resize(80, 24)));
}
