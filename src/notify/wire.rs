//! The bodies a target receives: Slack's `{"text": ...}` (which Mattermost, Rocket.Chat and
//! Discord's `/slack` endpoint also read) or the event as JSON.

use serde::Serialize;

use super::Event;

/// `format = "json"`: one event, as the activity history has it.
#[derive(Debug, Serialize)]
struct JsonEvent<'a> {
    pool: &'a str,
    /// The filter name the activity falls under (`scale`, `clone`, ...), or null.
    event: Option<&'static str>,
    action: &'a str,
    cause: &'a str,
    outcome: &'a str,
    /// The VM's name for an activity about one VM, else null.
    vm: Option<&'a str>,
    detail: &'a str,
    /// RFC 3339, UTC.
    time: String,
}

/// `format = "slack"`.
#[derive(Debug, Serialize)]
struct SlackMessage {
    text: String,
}

pub fn json(e: &Event) -> Vec<u8> {
    let body = JsonEvent {
        pool: &e.pool,
        event: e.kind.map(|k| k.as_str()),
        action: &e.action,
        cause: &e.cause,
        outcome: &e.outcome,
        vm: e.vm.as_deref(),
        detail: &e.detail,
        time: crate::clock::rfc3339(e.at),
    };
    serde_json::to_vec(&body).expect("a struct of strings serializes")
}

/// One line a person reads at 3 a.m.: `[web] clone ok: web-clone-3 (uuid) (below desired size)`.
pub fn slack(e: &Event) -> Vec<u8> {
    let mut text = format!("[{}] {} {}", e.pool, e.action, e.outcome);
    if !e.detail.is_empty() {
        text.push_str(": ");
        text.push_str(&e.detail);
    }
    if !e.cause.is_empty() {
        text.push_str(&format!(" ({})", e.cause));
    }
    serde_json::to_vec(&SlackMessage { text }).expect("a struct of strings serializes")
}
