use ratatui::Terminal;
use ratatui::backend::TestBackend;

use super::*;
use crate::cli::monitor::table::tests::snapshot;

/// The screen `view` draws on a terminal of 150 by 30, as lines of text.
fn screen(view: &View) -> Vec<String> {
    let mut terminal = Terminal::new(TestBackend::new(150, 30)).expect("a test terminal");
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
    let lines = screen(&view);
    assert!(
        lines[0].starts_with("ohfp monitor  http://127.0.0.1:8000  last event 42  at "),
        "{lines:#?}"
    );
    assert!(
        lines[1].starts_with("events: disconnected, retrying (the event stream ended)"),
        "{lines:#?}"
    );
    let text = lines.join("\n");
    for expected in ["STRATEGIES (2)", "ALERTS (0)", "(none)", "REQUESTS (1)", "pending 1, running 2"] {
        assert!(text.contains(expected), "{expected} in\n{text}");
    }
    // The rows are the same cells as --once prints, in the same columns.
    let row = lines.iter().find(|l| l.contains("sim-primary")).unwrap();
    let header = lines.iter().find(|l| l.contains("NAME")).unwrap();
    assert_eq!(row.find("healthy"), header.find("HEALTH"), "{header}\n{row}");
    assert!(text.contains("open (forced)"));
}

#[test]
fn before_the_first_snapshot_the_screen_says_so_and_a_failure_is_shown() {
    let mut view = View::new("http://127.0.0.1:9".into());
    view.fetched(Err(FetchError::Unreachable("cannot reach the service".into())));
    let lines = screen(&view);
    assert!(lines[0].contains("waiting for the first snapshot"), "{lines:#?}");
    assert!(
        lines[1].contains("events: connecting  snapshot: cannot reach the service"),
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
