//! Following the service's event stream (`GET /api/v1/events/stream`, server-sent events) for
//! the full-screen view: each event only says "something changed", so the view fetches the
//! snapshot again. A dropped stream is opened again with `Last-Event-ID`.

use std::time::Duration;

use reqwest::Method;
use tokio::sync::mpsc::UnboundedSender;

use super::Msg;
use crate::cli::client::{http_client, request, send_to_first_reachable};

/// Wait before opening the stream again after it dropped.
const RETRY_AFTER: Duration = Duration::from_secs(2);

/// Reads server-sent events from chunks as they come, and answers the ids of complete events.
#[derive(Debug, Default)]
pub struct SseReader {
    pending: Vec<u8>,
    id: Option<u64>,
    has_data: bool,
}

impl SseReader {
    /// Takes the next chunk; answers the id of each event it completes (an event without an id
    /// answers the last id seen, as the SSE rules keep it).
    pub fn push(&mut self, chunk: &[u8]) -> Vec<Option<u64>> {
        self.pending.extend_from_slice(chunk);
        let mut done = Vec::new();
        while let Some(end) = self.pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=end).collect();
            let line = String::from_utf8_lossy(&line);
            let line = line.trim_end_matches(['\n', '\r']);
            if line.is_empty() {
                if std::mem::take(&mut self.has_data) {
                    done.push(self.id);
                }
                continue;
            }
            let (field, value) = line.split_once(':').unwrap_or((line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            match field {
                "id" => self.id = value.parse().ok().or(self.id),
                "data" => self.has_data = true,
                _ => {}
            }
        }
        done
    }
}

/// Follows the stream until the view stops listening: says when it is connected or dropped,
/// and sends each event's id. Reconnects after [`RETRY_AFTER`] from the last id it got.
pub async fn follow(urls: String, token: Option<String>, tx: UnboundedSender<Msg>) {
    let client = http_client();
    let mut last_id: Option<u64> = None;
    while !tx.is_closed() {
        let sent = send_to_first_reachable(&urls, |base| {
            let req = request(
                &client,
                Method::GET,
                base,
                "/api/v1/events/stream",
                token.as_deref(),
            );
            match last_id {
                Some(id) => req.header("Last-Event-ID", id.to_string()),
                None => req,
            }
        })
        .await;
        let reason = match sent.map(|(res, _)| res) {
            Err(why) => why,
            Ok(res) if !res.status().is_success() => {
                format!("the event stream answered {}", res.status())
            }
            Ok(mut res) => {
                if tx.send(Msg::Connected).is_err() {
                    return;
                }
                let mut reader = SseReader::default();
                loop {
                    match res.chunk().await {
                        Ok(Some(chunk)) => {
                            for id in reader.push(&chunk) {
                                last_id = id.or(last_id);
                                if tx.send(Msg::Changed).is_err() {
                                    return;
                                }
                            }
                        }
                        Ok(None) => break "the event stream ended".to_string(),
                        Err(e) => break format!("the event stream broke: {e}"),
                    }
                }
            }
        };
        if tx.send(Msg::Disconnected(reason)).is_err() {
            return;
        }
        tokio::time::sleep(RETRY_AFTER).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_complete_on_a_blank_line_across_chunks() {
        let mut r = SseReader::default();
        assert!(
            r.push(b": keep-alive\n\nid: 7\nevent: provider\nda")
                .is_empty()
        );
        assert_eq!(
            r.push(b"ta: {\"id\":7}\n\nid: 8\r\ndata: {}\r\n\r\n"),
            vec![Some(7), Some(8)]
        );
        // An event without an id keeps the last one; a comment alone is no event.
        assert_eq!(r.push(b"data: {}\n\n:\n\n"), vec![Some(8)]);
    }
}
