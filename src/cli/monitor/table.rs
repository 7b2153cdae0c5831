//! The monitor's three tables as plain rows: one function per section turns a snapshot into
//! cells, and one layout pads them into fixed columns. `--once` prints the laid-out lines; the
//! full-screen view puts the same cells into its tables.

use chrono::{DateTime, Utc};

use super::snapshot::{ActiveAlert, RequestInFlight, Snapshot};
use crate::app::status::StrategyStatus;
use crate::strategy::CircuitMode;

/// What an absent value shows.
pub const NONE: &str = "-";
/// What an empty section shows.
pub const EMPTY: &str = "(none)";
/// Blanks between two columns.
pub const GAP: u16 = 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Align {
    Left,
    Right,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Column {
    pub title: &'static str,
    /// Longer cells are cut to this many characters, ending in `…`.
    pub max: usize,
    pub align: Align,
    /// The column that narrows when a screen is too narrow for the table (a message).
    pub gives_way: bool,
}

const fn col(title: &'static str, max: usize, align: Align) -> Column {
    Column {
        title,
        max,
        align,
        gives_way: false,
    }
}

/// A text column that narrows first on a narrow screen.
const fn wide(title: &'static str, max: usize) -> Column {
    Column {
        title,
        max,
        align: Align::Left,
        gives_way: true,
    }
}

const STRATEGY_COLUMNS: &[Column] = &[
    col("NAME", 24, Align::Left),
    col("TYPE", 16, Align::Left),
    col("ENABLED", 7, Align::Left),
    col("HEALTH", 9, Align::Left),
    col("CIRCUIT", 17, Align::Left),
    col("IN FLIGHT", 9, Align::Right),
    col("OPS", 9, Align::Right),
    col("SUCCESS", 7, Align::Right),
    col("P95", 10, Align::Right),
    wide("LAST ERROR", 48),
];

const ALERT_COLUMNS: &[Column] = &[
    col("RULE", 28, Align::Left),
    col("CONDITION", 26, Align::Left),
    col("STRATEGY", 24, Align::Left),
    col("RAISED", 20, Align::Left),
    wide("MESSAGE", 60),
];

const REQUEST_COLUMNS: &[Column] = &[
    col("REQUEST", 40, Align::Left),
    col("KIND", 7, Align::Left),
    col("TEMPLATE", 24, Align::Left),
    col("STATE", 12, Align::Left),
    col("MACHINES", 8, Align::Right),
    wide("BY STATE", 48),
    col("CREATED", 20, Align::Left),
];

/// One table: its title, columns and rows of cells (already cut to their column's `max`).
#[derive(Debug, Clone, PartialEq)]
pub struct Section {
    pub title: &'static str,
    pub columns: &'static [Column],
    pub rows: Vec<Vec<String>>,
}

impl Section {
    /// Each column's width: its title's or its longest cell's.
    pub fn widths(&self) -> Vec<usize> {
        self.columns
            .iter()
            .enumerate()
            .map(|(i, c)| {
                self.rows
                    .iter()
                    .filter_map(|r| r.get(i))
                    .map(|cell| cell.chars().count())
                    .fold(c.title.chars().count(), usize::max)
            })
            .collect()
    }

    /// The widths within `room` characters (columns [`GAP`] apart): the column that gives way
    /// narrows by what is missing, down to one character; if that is not enough, the columns
    /// on the right are cut at the edge (width 0: not shown), so the names stay whole.
    pub fn widths_within(&self, room: usize) -> Vec<usize> {
        let gap = usize::from(GAP);
        let mut widths = self.widths();
        let needed = widths.iter().sum::<usize>() + gap * widths.len().saturating_sub(1);
        let missing = needed.saturating_sub(room);
        if let Some(w) = self
            .columns
            .iter()
            .position(|c| c.gives_way)
            .and_then(|i| widths.get_mut(i))
        {
            *w = w.saturating_sub(missing).max(1);
        }
        let mut used = 0;
        for (i, w) in widths.iter_mut().enumerate() {
            let start = if i == 0 { 0 } else { used + gap };
            *w = (*w).min(room.saturating_sub(start));
            used = if *w == 0 { room } else { start + *w };
        }
        widths
    }

    /// The header and the rows, each cell padded to its column's width and alignment.
    pub fn padded(&self) -> (Vec<String>, Vec<Vec<String>>) {
        let widths = self.widths();
        let header = self.pad(&widths, self.columns.iter().map(|c| c.title));
        let rows = self
            .rows
            .iter()
            .map(|r| self.pad(&widths, r.iter().map(String::as_str)))
            .collect();
        (header, rows)
    }

    fn pad<'a>(&self, widths: &[usize], cells: impl Iterator<Item = &'a str>) -> Vec<String> {
        cells
            .zip(self.columns.iter().zip(widths))
            .map(|(cell, (c, &w))| match c.align {
                Align::Left => format!("{cell:<w$}"),
                Align::Right => format!("{cell:>w$}"),
            })
            .collect()
    }

    /// The section as lines of text: its title, then the header and rows in fixed columns, or
    /// `(none)`.
    pub fn lines(&self) -> Vec<String> {
        let mut lines = vec![self.title.to_string()];
        if self.rows.is_empty() {
            lines.push(EMPTY.to_string());
            return lines;
        }
        let (header, rows) = self.padded();
        let gap = " ".repeat(usize::from(GAP));
        for cells in std::iter::once(header).chain(rows) {
            lines.push(cells.join(&gap).trim_end().to_string());
        }
        lines
    }
}

/// The three sections of a snapshot, in the order they are shown.
pub fn sections(s: &Snapshot) -> [Section; 3] {
    [
        section(
            "STRATEGIES",
            STRATEGY_COLUMNS,
            &s.strategies,
            strategy_cells,
        ),
        section("ALERTS", ALERT_COLUMNS, &s.alerts, alert_cells),
        section("REQUESTS", REQUEST_COLUMNS, &s.requests, request_cells),
    ]
}

fn section<T>(
    title: &'static str,
    columns: &'static [Column],
    items: &[T],
    cells: fn(&T) -> Vec<String>,
) -> Section {
    let rows = items
        .iter()
        .map(|item| {
            cells(item)
                .into_iter()
                .zip(columns)
                .map(|(cell, c)| cut(&cell, c.max))
                .collect()
        })
        .collect();
    Section {
        title,
        columns,
        rows,
    }
}

/// The line above the tables: where the figures come from and how fresh they are.
pub fn header(url: &str, s: &Snapshot, at: DateTime<Utc>) -> String {
    format!(
        "ohfp monitor  {url}  last event {}  at {}  (numbers over {} h)",
        s.last_event_id,
        time(at),
        s.window_hours
    )
}

/// The whole snapshot as plain text: the header, then each section, a blank line between.
pub fn plain(url: &str, s: &Snapshot, at: DateTime<Utc>) -> String {
    let mut out = header(url, s, at);
    for section in sections(s) {
        out.push_str("\n\n");
        out.push_str(&section.lines().join("\n"));
    }
    out
}

fn strategy_cells(s: &StrategyStatus) -> Vec<String> {
    let circuit = match s.circuit_mode {
        CircuitMode::Auto => s.circuit.as_str().to_string(),
        _ => format!("{} (forced)", s.circuit.as_str()),
    };
    vec![
        s.name.clone(),
        s.provider_type.clone(),
        if s.enabled { "yes" } else { "no" }.to_string(),
        s.health.as_str().to_string(),
        circuit,
        s.in_flight.to_string(),
        s.operations.to_string(),
        s.success_rate.map_or_else(|| NONE.into(), percent),
        s.p95_ms.map_or_else(|| NONE.into(), millis),
        or_none(s.last_error.as_deref()),
    ]
}

fn alert_cells(a: &ActiveAlert) -> Vec<String> {
    vec![
        a.rule.clone(),
        a.condition.as_str().to_string(),
        or_none(a.strategy.as_deref()),
        time(a.raised_at),
        a.message.clone(),
    ]
}

fn request_cells(r: &RequestInFlight) -> Vec<String> {
    let by_state = r
        .machines_by_state
        .iter()
        .map(|(state, n)| format!("{state} {n}"))
        .collect::<Vec<_>>()
        .join(", ");
    vec![
        r.request_id.clone(),
        r.kind.as_str().to_string(),
        or_none(r.template_id.as_deref()),
        r.state.as_str().to_string(),
        r.machines.to_string(),
        if by_state.is_empty() {
            NONE.to_string()
        } else {
            by_state
        },
        time(r.created_at),
    ]
}

fn or_none(text: Option<&str>) -> String {
    text.filter(|t| !t.is_empty()).unwrap_or(NONE).to_string()
}

/// A success rate (already a percentage), one decimal.
fn percent(rate: f64) -> String {
    format!("{rate:.1}%")
}

/// A latency: tenths under 10 ms, whole milliseconds under 10 s, else seconds.
fn millis(ms: f64) -> String {
    if ms < 10.0 {
        format!("{ms:.1} ms")
    } else if ms < 10_000.0 {
        format!("{ms:.0} ms")
    } else {
        format!("{:.1} s", ms / 1000.0)
    }
}

fn time(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M:%SZ").to_string()
}

/// The text on one line (line breaks become spaces), cut to `max` characters ending in `…`.
fn cut(text: &str, max: usize) -> String {
    let flat: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if flat.chars().count() <= max {
        return flat;
    }
    let mut short: String = flat.chars().take(max.saturating_sub(1)).collect();
    short.push('…');
    short
}

#[cfg(test)]
pub(super) mod tests;
