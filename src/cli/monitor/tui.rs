//! The full-screen view: a header (service, last event, time, the stream's state) and the three
//! tables, drawn by [`draw`] from what the loop knows. The loop follows the event stream, fetches
//! the snapshot at most every [`DEBOUNCE`] while events come and every [`REFRESH_EVERY`] anyway,
//! and quits on `q`, Esc, Ctrl-C or SIGTERM, putting the terminal back as it was (on a panic
//! too: the hook `ratatui::try_init` installs does it).

use std::io::IsTerminal;
use std::time::Duration;

use chrono::{DateTime, Utc};
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Block, Paragraph, Row, Table};
use ratatui::{DefaultTerminal, Frame};
use tokio::sync::mpsc::{self, UnboundedSender};
use tokio::time::Instant;

use super::table::{self, EMPTY, GAP, Section};
use super::{FetchError, MonitorArgs, Msg, Snapshot, fetch, stream};
use crate::cli::client::{EXIT_USAGE, http_client};

/// Events coming close together are answered by one fetch, this long after the first.
const DEBOUNCE: Duration = Duration::from_millis(500);
/// The snapshot is fetched this often even without events (the stream may be down).
const REFRESH_EVERY: Duration = Duration::from_secs(5);
/// How long the input thread waits for a key before checking that the view still listens.
const INPUT_POLL: Duration = Duration::from_millis(200);

/// The event stream's state, as the header shows it.
#[derive(Debug, Clone, PartialEq)]
pub enum Link {
    Connecting,
    Live,
    /// Dropped, for this reason; being opened again.
    Retrying(String),
}

/// Everything the screen shows.
#[derive(Debug, Clone)]
pub struct View {
    pub url: String,
    pub snapshot: Option<Snapshot>,
    pub fetched_at: Option<DateTime<Utc>>,
    pub link: Link,
    /// Why the last fetch failed (the last good snapshot stays on screen).
    pub problem: Option<String>,
}

impl View {
    fn new(url: String) -> Self {
        Self {
            url,
            snapshot: None,
            fetched_at: None,
            link: Link::Connecting,
            problem: None,
        }
    }

    fn fetched(&mut self, result: Result<Snapshot, FetchError>) {
        match result {
            Ok(s) => {
                self.snapshot = Some(s);
                self.fetched_at = Some(Utc::now());
                self.problem = None;
            }
            Err(e) => self.problem = Some(e.summary()),
        }
    }

    fn header_lines(&self) -> [Line<'static>; 2] {
        let first = match (&self.snapshot, self.fetched_at) {
            (Some(s), Some(at)) => table::header(&self.url, s, at),
            _ => format!("ohfp monitor  {}  waiting for the first snapshot", self.url),
        };
        // The key first: the reasons after it may be cut at the edge.
        let mut second = match &self.link {
            Link::Connecting => "q: quit  events: connecting".to_string(),
            Link::Live => "q: quit  events: live".to_string(),
            Link::Retrying(why) => format!("q: quit  events: disconnected, retrying ({why})"),
        };
        if let Some(problem) = &self.problem {
            second.push_str(&format!("  snapshot: {problem}"));
        }
        [Line::from(first), Line::from(second)]
    }
}

/// Draws the view: a pure function of `view`, so a test can draw it on a test backend.
pub fn draw(frame: &mut Frame, view: &View) {
    let sections = view.snapshot.as_ref().map(table::sections);
    let height = |i: usize| -> u16 {
        let rows = sections.as_ref().map_or(0, |s| {
            s[i].rows.len().max(1) + usize::from(!s[i].rows.is_empty())
        });
        u16::try_from(rows + 2).unwrap_or(u16::MAX).max(3)
    };
    let [top, strategies, alerts, requests] = Layout::vertical([
        Constraint::Length(2),
        Constraint::Length(height(0)),
        Constraint::Length(height(1)),
        Constraint::Min(3),
    ])
    .areas(frame.area());
    frame.render_widget(Paragraph::new(view.header_lines().to_vec()), top);
    match &sections {
        Some(sections) => {
            for (section, area) in sections.iter().zip([strategies, alerts, requests]) {
                draw_section(frame, area, section);
            }
        }
        None => frame.render_widget(
            Paragraph::new("no snapshot yet").block(Block::bordered()),
            strategies,
        ),
    }
}

fn draw_section(frame: &mut Frame, area: Rect, section: &Section) {
    let block = Block::bordered().title(format!(" {} ({}) ", section.title, section.rows.len()));
    if section.rows.is_empty() {
        frame.render_widget(Paragraph::new(EMPTY).block(block), area);
        return;
    }
    let (header, rows) = section.padded();
    // Inside the borders; on a narrow screen the column that gives way narrows, then the
    // columns on the right that do not fit are left out.
    let widths = section.widths_within(usize::from(area.width.saturating_sub(2)));
    let shown = |cells: Vec<String>| -> Row<'static> {
        Row::new(
            cells
                .into_iter()
                .zip(&widths)
                .filter(|(_, w)| **w > 0)
                .map(|(cell, _)| cell),
        )
    };
    let constraints = widths
        .iter()
        .filter(|w| **w > 0)
        .map(|w| Constraint::Length(u16::try_from(*w).unwrap_or(u16::MAX)));
    let table = Table::new(rows.into_iter().map(shown), constraints)
        .header(shown(header).style(Style::new().add_modifier(Modifier::BOLD)))
        .column_spacing(GAP)
        .block(block);
    frame.render_widget(table, area);
}

/// Runs the full-screen view until the user quits; answers the exit code.
pub async fn run(args: MonitorArgs) -> i32 {
    if !std::io::stdout().is_terminal() {
        eprintln!("ohfp: the monitor needs a terminal; `ohfp monitor --once` prints plain text");
        return EXIT_USAGE;
    }
    let mut terminal = match ratatui::try_init() {
        Ok(t) => t,
        Err(e) => {
            eprintln!("ohfp: cannot take the terminal: {e}");
            return EXIT_USAGE;
        }
    };
    let result = watch(&mut terminal, args).await;
    ratatui::restore();
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("ohfp: the terminal failed: {e}");
            1
        }
    }
}

async fn watch(terminal: &mut DefaultTerminal, args: MonitorArgs) -> std::io::Result<()> {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let follower = tokio::spawn(stream::follow(
        args.url.clone(),
        args.token.clone(),
        tx.clone(),
    ));
    read_input(tx.clone());
    let client = http_client();
    let mut view = View::new(args.url.clone());
    let mut every = tokio::time::interval(REFRESH_EVERY);
    // When the snapshot is to be fetched next, if it is due.
    let mut due: Option<Instant> = None;
    let mut fetching = false;
    // SIGTERM (or SIGINT from outside: in raw mode Ctrl-C is a key) ends the view cleanly too.
    let stop = crate::server::shutdown_signal();
    tokio::pin!(stop);
    let outcome = loop {
        if let Err(e) = terminal.draw(|f| draw(f, &view)) {
            break Err(e);
        }
        let wake = due.unwrap_or_else(|| Instant::now() + REFRESH_EVERY);
        tokio::select! {
            msg = rx.recv() => match msg {
                Some(Msg::Input(Ok(input))) if quits(&input) => break Ok(()),
                Some(Msg::Input(Ok(_))) => {}
                Some(Msg::Input(Err(e))) => break Err(e),
                Some(Msg::Changed) => {
                    due.get_or_insert_with(|| Instant::now() + DEBOUNCE);
                }
                Some(Msg::Connected) => {
                    view.link = Link::Live;
                    due.get_or_insert_with(|| Instant::now() + DEBOUNCE);
                }
                Some(Msg::Disconnected(why)) => view.link = Link::Retrying(why),
                Some(Msg::Fetched(result)) => {
                    fetching = false;
                    view.fetched(*result);
                }
                None => break Ok(()),
            },
            () = &mut stop => break Ok(()),
            _ = every.tick() => due = Some(Instant::now()),
            () = tokio::time::sleep_until(wake), if due.is_some() => {
                if fetching {
                    due = Some(Instant::now() + DEBOUNCE);
                } else {
                    due = None;
                    fetching = true;
                    let (client, args, tx) = (client.clone(), args.clone(), tx.clone());
                    tokio::spawn(async move {
                        let result = fetch(&client, &args).await;
                        let _ = tx.send(Msg::Fetched(Box::new(result)));
                    });
                }
            }
        }
    };
    follower.abort();
    outcome
}

fn quits(input: &Event) -> bool {
    let Event::Key(key) = input else {
        return false;
    };
    key.kind == KeyEventKind::Press
        && match key.code {
            KeyCode::Char('q' | 'Q') | KeyCode::Esc => true,
            KeyCode::Char('c') => key.modifiers.contains(KeyModifiers::CONTROL),
            _ => false,
        }
}

/// Reads the terminal's input on a thread of its own (crossterm's reads block) until the view
/// stops listening. A read that fails is sent too, and ends the view: without input it could
/// not be quit.
fn read_input(tx: UnboundedSender<Msg>) {
    std::thread::spawn(move || {
        while !tx.is_closed() {
            let input = match event::poll(INPUT_POLL) {
                Ok(false) => continue,
                Ok(true) => event::read(),
                Err(e) => Err(e),
            };
            let failed = input.is_err();
            if tx.send(Msg::Input(input)).is_err() || failed {
                return;
            }
        }
    });
}

#[cfg(test)]
mod tests;
