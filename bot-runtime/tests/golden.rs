//! Release N's durable formats still work after an upgrade: buttons in users' chat histories,
//! timers and once-memos waiting in the hot store, jobs waiting in the outbox streams. The
//! fixtures (`fixtures/release-n/`) were captured from release N's handlers; see their README.

use bot_runtime::chat::protocol::{Callback, ReportReason, SearchMemo, TimerKind, idle_timer, search_timer_member};
use bot_runtime::hot::Job;
use bot_runtime::matching::{Gender, Member};
use serde_json::Value;

const CALLBACKS: &str = include_str!("fixtures/release-n/callback_data.json");
const TIMERS: &str = include_str!("fixtures/release-n/timers.json");
const JOBS: &str = include_str!("fixtures/release-n/outbox_jobs.jsonl");
const MEMOS: &str = include_str!("fixtures/release-n/once_memos.json");

fn member(s: &str) -> Member {
    s.parse().expect("member")
}

#[test]
fn release_n_buttons_still_work_after_upgrade() {
    let sent: Vec<String> = serde_json::from_str(CALLBACKS).unwrap();
    let expected = |data: &str| -> Callback {
        match data {
            "terms:ok" => Callback::AcceptTerms,
            "chan:check" => Callback::CheckChannels,
            "g:m" => Callback::Gender(Gender::Male),
            "g:f" => Callback::Gender(Gender::Female),
            "g:o" => Callback::Gender(Gender::Other),
            "prof:edit" => Callback::EditProfile,
            "prof:del" => Callback::DeleteProfile,
            "del:yes" => Callback::ConfirmDelete,
            "del:no" => Callback::KeepProfile,
            "cancel" => Callback::CancelSearch,
            "rate:1:u" => Callback::Rate { session: 1, up: true },
            "rate:1:d" => Callback::Rate { session: 1, up: false },
            "rate:2:u" => Callback::Rate { session: 2, up: true },
            "rate:2:d" => Callback::Rate { session: 2, up: false },
            "rr:1:spam" => Callback::ReportReason { report: 1, reason: ReportReason::Spam },
            "rr:1:abuse" => Callback::ReportReason { report: 1, reason: ReportReason::Abuse },
            "rr:1:minor" => Callback::ReportReason { report: 1, reason: ReportReason::Minor },
            "rr:1:other" => Callback::ReportReason { report: 1, reason: ReportReason::Other },
            other => panic!("a release N button this test does not know: {other:?}"),
        }
    };
    assert_eq!(sent.len(), 18, "every kind of button release N sends was captured");
    for data in &sent {
        let parsed = Callback::parse(data);
        assert_eq!(parsed, Some(expected(data)), "{data}");
        assert_eq!(parsed.map(|c| c.render()).as_deref(), Some(data.as_str()), "renders byte-identical");
    }
}

#[test]
fn the_readme_press_example_is_a_live_button() {
    let readme = include_str!("../../README.md");
    assert!(readme.contains(r#""data":"terms:ok""#), "README's /sim/press example changed; update this test with it");
    assert_eq!(Callback::parse("terms:ok"), Some(Callback::AcceptTerms));
}

#[test]
fn release_n_timers_still_fire_after_upgrade() {
    let timers: Vec<Value> = serde_json::from_str(TIMERS).unwrap();
    assert_eq!(timers.len(), 3);
    for t in &timers {
        let id = t["id"].as_str().unwrap();
        let stored = t["payload"].as_str().unwrap();
        let kind = TimerKind::parse(&serde_json::from_str(stored).unwrap()).unwrap_or_else(|e| panic!("{stored}: {e}"));
        match &kind {
            TimerKind::Search { t0, n } => {
                assert_eq!(*t0, 1_750_000_960_000);
                assert!(*n == 1 || *n == 2, "{n}");
                assert_eq!(search_timer_member(id), Some(member("alpha:1001")), "{id}");
            }
            TimerKind::Idle { a, b } => {
                assert_eq!((a, b), (&member("beta:2002"), &member("alpha:1001")));
                assert_eq!(idle_timer(a, b), (member("alpha:1001"), id.to_string()), "same id, same owner");
            }
            // Kinds release N never wrote (the admin role's requests).
            TimerKind::Ban { .. } | TimerKind::Refund { .. } => panic!("release N wrote no {} timer", kind.name()),
        }
        assert_eq!(serde_json::to_string(&kind.render()).unwrap(), stored, "a rescheduled timer is stored as release N stored it");
    }
}

#[test]
fn release_n_outbox_jobs_are_sent_unchanged_after_upgrade() {
    let mut names = Vec::new();
    for line in JOBS.lines() {
        let entry: Value = serde_json::from_str(line).unwrap();
        let name = entry["name"].as_str().unwrap().to_string();
        let stored = entry["json"].as_str().unwrap();
        let job: Job = serde_json::from_str(stored).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(serde_json::to_string(&job).unwrap(), stored, "{name}");
        match name.as_str() {
            "cross_bot_text_with_origin_reply_to_chat_member" => {
                assert_eq!(job.method, "sendMessage");
                assert!(job.origin.is_some() && job.reply_to.is_some() && job.chat_member.as_deref() == Some("beta:2002"));
            }
            "same_bot_copy_message" => assert_eq!(job.method, "copyMessage"),
            "cross_bot_photo_upload" => assert_eq!(job.upload.as_ref().map(|u| u.field.as_str()), Some("photo")),
            "edit_of_relayed_text_by_reply_map" => assert_eq!(job.target.as_deref(), Some("rm:alpha:1001:10")),
            "send_with_save_as" => assert_eq!(job.save_as.as_deref(), Some("msg:alpha:1001:search")),
            _ => {}
        }
        names.push(name);
    }
    for needed in [
        "cross_bot_text_with_origin_reply_to_chat_member",
        "same_bot_copy_message",
        "cross_bot_photo_upload",
        "edit_of_relayed_text_by_reply_map",
        "bulk_edit_of_saved_message",
        "send_with_save_as",
    ] {
        assert!(names.iter().any(|n| n == needed), "fixture {needed} missing");
    }
}

/// A job's buttons are callback data too: the ones waiting in an outbox must parse.
#[test]
fn release_n_buttons_waiting_in_the_outbox_still_work_after_upgrade() {
    for line in JOBS.lines() {
        let entry: Value = serde_json::from_str(line).unwrap();
        let job: Job = serde_json::from_str(entry["json"].as_str().unwrap()).unwrap();
        for row in job.params["reply_markup"]["inline_keyboard"].as_array().into_iter().flatten() {
            for button in row.as_array().into_iter().flatten() {
                if let Some(data) = button["callback_data"].as_str() {
                    assert!(Callback::parse(data).is_some(), "{data}");
                }
            }
        }
    }
}

#[test]
fn release_n_once_memos_are_read_after_upgrade() {
    let memos: Vec<Value> = serde_json::from_str(MEMOS).unwrap();
    let mut seen = 0;
    for m in &memos {
        let value = m["value"].as_str().unwrap();
        match m["step"].as_str().unwrap() {
            "search" => {
                let memo = SearchMemo::parse(value).unwrap_or_else(|| panic!("{value}"));
                let expected = match value {
                    "queued" => SearchMemo::Queued,
                    "matched alpha:1001" => SearchMemo::Matched(member("alpha:1001")),
                    "in_chat alpha:1001" => SearchMemo::InChat(member("alpha:1001")),
                    "matched alpha:1003" => SearchMemo::Matched(member("alpha:1003")),
                    other => panic!("unexpected memo {other}"),
                };
                assert_eq!(memo, expected);
                assert_eq!(memo.render(), value, "a replica of release N reads what this one writes");
            }
            // end (and gone, idle): the partner's text form.
            "end" => assert_eq!(member(value).to_string(), value),
            other => panic!("unexpected step {other}"),
        }
        seen += 1;
    }
    assert_eq!(seen, 6);
}
