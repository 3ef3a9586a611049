//! The chat's wire formats, each with one parse and one render: commands (typed or tapped on
//! the reply keyboard), inline buttons' `callback_data`, timer ids and payloads, and the
//! results `Effects::once` remembers.
//!
//! Everything here but [`Command`] outlives a deploy: buttons sit in users' chat histories for
//! years, timers and memos wait in the hot store while replicas of two releases run side by
//! side. So the rendered forms are frozen: `tests/golden.rs` checks them against what release N
//! wrote (`tests/fixtures/release-n/`). Add variants; never change what an existing one renders.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::chat::text_key::TextKey;
use crate::hot::Timer;
use crate::ingress::update::Message;
use crate::matching::{Gender, Member, SearchOutcome};
use crate::texts::Lang;

/// Telegram refuses a button whose `callback_data` is longer than this (bytes).
pub const MAX_CALLBACK_DATA: usize = 64;

// ---- commands ----------------------------------------------------------------------------

/// What the user asked for, typed as `/command` or tapped on a reply keyboard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `/start` with its deep-link payload (`t.me/bot?start=<payload>`), if any.
    Start {
        payload: Option<String>,
    },
    Help,
    DeleteMe,
    Report,
    Block,
    Stop,
    /// `/search` (or `/find`).
    Search,
    Next,
    Profile,
    Stats,
    /// `/vip`: the member's VIP and the shop.
    Vip,
    /// `/history`: the member's purchases.
    History,
    /// `/paysupport [question]`: payment support (Telegram requires it of bots that sell).
    PaySupport {
        question: Option<String>,
    },
    /// `/terms`: the terms of sale (Telegram requires it of bots that sell).
    SaleTerms,
    /// `/lock`: lock the current chat with credits.
    Lock,
    /// `/invite`: the member's invite link and referral figures.
    Invite,
    /// `/refund <charge id>`: an admin refunds a payment.
    Refund {
        charge: Option<String>,
    },
    /// `/news [on|off]`: the bot's announcements (admin broadcasts) on or off.
    News {
        on: Option<bool>,
    },
    /// `/ban <user id> [hours]`: an admin bans a member on this bot (chat/admin_commands.rs).
    Ban {
        args: String,
    },
    /// `/unban <user id>`: an admin lifts a ban on this bot.
    Unban {
        args: String,
    },
    /// `/broadcast <text>`: an admin announces to the bot's members, after a confirmation.
    Broadcast {
        text: String,
    },
    /// Any other command, by its name.
    Unknown(String),
}

/// The reply-keyboard buttons and what a tap on each means (a tap arrives as the button's text,
/// in whichever language the keyboard was drawn in).
pub const BUTTONS: [(TextKey, Command); 9] = [
    (TextKey::MenuFind, Command::Search),
    (TextKey::MenuVip, Command::Vip),
    (TextKey::MenuProfile, Command::Profile),
    (TextKey::MenuHelp, Command::Help),
    (TextKey::ChatNext, Command::Next),
    (TextKey::ChatStop, Command::Stop),
    (TextKey::ChatReport, Command::Report),
    (TextKey::ChatBlock, Command::Block),
    (TextKey::ChatLock, Command::Lock),
];

impl Command {
    /// The command of a message whose text is `/name[@bot] [arg]`.
    pub fn of_message(m: &Message) -> Option<Command> {
        m.command().map(|(name, arg)| Command::parse(&name, arg))
    }

    /// A command from its (lower-case) name and argument, as [`Message::command`] splits them.
    pub fn parse(name: &str, arg: &str) -> Command {
        match name {
            "start" => Command::Start { payload: Some(arg).filter(|a| !a.is_empty()).map(str::to_string) },
            "help" => Command::Help,
            "delete_me" => Command::DeleteMe,
            "report" => Command::Report,
            "block" => Command::Block,
            "stop" => Command::Stop,
            "search" | "find" => Command::Search,
            "next" => Command::Next,
            "profile" => Command::Profile,
            "stats" => Command::Stats,
            "vip" => Command::Vip,
            "history" => Command::History,
            "paysupport" => Command::PaySupport { question: Some(arg).filter(|a| !a.is_empty()).map(str::to_string) },
            "terms" => Command::SaleTerms,
            "lock" => Command::Lock,
            "invite" => Command::Invite,
            "refund" => Command::Refund { charge: Some(arg).filter(|a| !a.is_empty()).map(str::to_string) },
            "ban" => Command::Ban { args: arg.to_string() },
            "unban" => Command::Unban { args: arg.to_string() },
            "broadcast" => Command::Broadcast { text: arg.to_string() },
            "news" => Command::News {
                on: match arg.trim().to_lowercase().as_str() {
                    "on" => Some(true),
                    "off" => Some(false),
                    _ => None,
                },
            },
            other => Command::Unknown(other.to_string()),
        }
    }

    /// The message text that asks for this command.
    pub fn render(&self) -> String {
        match self {
            Command::Start { payload: Some(p) } => format!("/start {p}"),
            Command::Start { payload: None } => "/start".into(),
            Command::Help => "/help".into(),
            Command::DeleteMe => "/delete_me".into(),
            Command::Report => "/report".into(),
            Command::Block => "/block".into(),
            Command::Stop => "/stop".into(),
            Command::Search => "/search".into(),
            Command::Next => "/next".into(),
            Command::Profile => "/profile".into(),
            Command::Stats => "/stats".into(),
            Command::Vip => "/vip".into(),
            Command::History => "/history".into(),
            Command::PaySupport { question: Some(q) } => format!("/paysupport {q}"),
            Command::PaySupport { question: None } => "/paysupport".into(),
            Command::SaleTerms => "/terms".into(),
            Command::Lock => "/lock".into(),
            Command::Invite => "/invite".into(),
            Command::Refund { charge: Some(c) } => format!("/refund {c}"),
            Command::Refund { charge: None } => "/refund".into(),
            Command::Ban { args } => format!("/ban {args}").trim_end().into(),
            Command::Unban { args } => format!("/unban {args}").trim_end().into(),
            Command::Broadcast { text } => format!("/broadcast {text}").trim_end().into(),
            Command::News { on: Some(true) } => "/news on".into(),
            Command::News { on: Some(false) } => "/news off".into(),
            Command::News { on: None } => "/news".into(),
            Command::Unknown(name) => format!("/{name}"),
        }
    }

    /// The command of a reply-keyboard button, from the text the tap sent (any language).
    pub fn of_button(text: &str) -> Option<Command> {
        // Asked of every message (is it a tap on the chat keyboard?): the labels of every
        // language are looked up once, not built again per message (callgrind: ≈ 15,000
        // instructions a message before).
        static LABELS: std::sync::OnceLock<std::collections::HashMap<String, Command>> = std::sync::OnceLock::new();
        LABELS
            .get_or_init(|| {
                let mut labels = std::collections::HashMap::new();
                for (key, command) in BUTTONS.iter() {
                    for lang in [Lang::En, Lang::Ru] {
                        labels.entry(key.text(lang)).or_insert_with(|| command.clone());
                    }
                }
                labels
            })
            .get(text)
            .cloned()
    }
}

// ---- inline buttons ----------------------------------------------------------------------

/// Why a user reported their partner (the report's follow-up question).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportReason {
    Spam,
    Abuse,
    Minor,
    Other,
}

impl ReportReason {
    pub const ALL: [ReportReason; 4] = [ReportReason::Spam, ReportReason::Abuse, ReportReason::Minor, ReportReason::Other];

    /// The word in `callback_data` and in the `reports.reason` column.
    pub fn as_str(self) -> &'static str {
        match self {
            ReportReason::Spam => "spam",
            ReportReason::Abuse => "abuse",
            ReportReason::Minor => "minor",
            ReportReason::Other => "other",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// The button's label.
    pub fn text_key(self) -> TextKey {
        match self {
            ReportReason::Spam => TextKey::ReasonSpam,
            ReportReason::Abuse => TextKey::ReasonAbuse,
            ReportReason::Minor => TextKey::ReasonMinor,
            ReportReason::Other => TextKey::ReasonOther,
        }
    }
}

/// An inline button's `callback_data`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Callback {
    /// `terms:ok`
    AcceptTerms,
    /// `chan:check`: "I joined the channels".
    CheckChannels,
    /// `g:m`, `g:f`, `g:o`
    Gender(Gender),
    /// `cancel`: stop searching.
    CancelSearch,
    /// `rate:<session>:u` / `rate:<session>:d`
    Rate { session: i64, up: bool },
    /// `rr:<report>:<reason>`
    ReportReason { report: i64, reason: ReportReason },
    /// `prof:edit`
    EditProfile,
    /// `prof:del`: asks to confirm.
    DeleteProfile,
    /// `del:yes`
    ConfirmDelete,
    /// `del:no`
    KeepProfile,
    /// `buy:<plan>`: buy a plan of the shop. `plan` is the plan's id, or for an id too long
    /// for `callback_data`, `#` and a digest of it ([`plan_ref`]).
    Buy { plan: String },
    /// `lock:<minutes>`: lock the current chat for one of the configured durations.
    Lock { minutes: u32 },
    /// `sc:<plan>`: cancel the member's subscription to a plan (named as in [`Callback::Buy`]).
    CancelSubscription { plan: String },
    /// `bc:<broadcast>:go` / `bc:<broadcast>:no`: an admin confirms or cancels an in-bot broadcast.
    Broadcast { id: i64, go: bool },
}

/// The longest plan reference that fits `buy:<plan>` into [`MAX_CALLBACK_DATA`].
const MAX_PLAN_REF: usize = MAX_CALLBACK_DATA - "buy:".len();

/// How a Buy button names a plan: its id (VipPlan names are short in practice), or `#` and 16
/// hex digits of its SHA-256 when the id would not fit. Stable across configuration changes,
/// unlike a position in the shop, so a button always buys the plan it showed.
pub fn plan_ref(plan_id: &str) -> String {
    if plan_id.len() <= MAX_PLAN_REF && !plan_id.starts_with('#') && !plan_id.contains(':') {
        return plan_id.to_string();
    }
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(plan_id.as_bytes());
    let hex: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
    format!("#{hex}")
}

impl Callback {
    /// The button a press is for; `None` for data this release never sends (a stale button).
    pub fn parse(data: &str) -> Option<Callback> {
        let id = |s: &str| s.parse::<i64>().ok();
        Some(match data.split(':').collect::<Vec<_>>().as_slice() {
            ["terms", "ok"] => Callback::AcceptTerms,
            ["chan", "check"] => Callback::CheckChannels,
            ["g", code] => Callback::Gender(Gender::parse(code)?),
            ["cancel"] => Callback::CancelSearch,
            ["rate", session, "u"] => Callback::Rate { session: id(session)?, up: true },
            ["rate", session, "d"] => Callback::Rate { session: id(session)?, up: false },
            ["rr", report, reason] => Callback::ReportReason { report: id(report)?, reason: ReportReason::parse(reason)? },
            ["prof", "edit"] => Callback::EditProfile,
            ["prof", "del"] => Callback::DeleteProfile,
            ["del", "yes"] => Callback::ConfirmDelete,
            ["del", "no"] => Callback::KeepProfile,
            ["sc", plan] if !plan.is_empty() && plan.len() <= MAX_PLAN_REF => Callback::CancelSubscription { plan: plan.to_string() },
            ["lock", minutes] => Callback::Lock { minutes: minutes.parse().ok().filter(|m| *m > 0)? },
            ["buy", plan] if !plan.is_empty() && plan.len() <= MAX_PLAN_REF => Callback::Buy { plan: plan.to_string() },
            ["bc", broadcast, "go"] => Callback::Broadcast { id: id(broadcast)?, go: true },
            ["bc", broadcast, "no"] => Callback::Broadcast { id: id(broadcast)?, go: false },
            _ => return None,
        })
    }

    /// The `callback_data` of the button (at most [`MAX_CALLBACK_DATA`] bytes).
    pub fn render(&self) -> String {
        match self {
            Callback::AcceptTerms => "terms:ok".into(),
            Callback::CheckChannels => "chan:check".into(),
            Callback::Gender(g) => format!("g:{}", g.code()),
            Callback::CancelSearch => "cancel".into(),
            Callback::Rate { session, up } => format!("rate:{session}:{}", if *up { "u" } else { "d" }),
            Callback::ReportReason { report, reason } => format!("rr:{report}:{}", reason.as_str()),
            Callback::EditProfile => "prof:edit".into(),
            Callback::DeleteProfile => "prof:del".into(),
            Callback::ConfirmDelete => "del:yes".into(),
            Callback::KeepProfile => "del:no".into(),
            Callback::Buy { plan } => format!("buy:{plan}"),
            Callback::Lock { minutes } => format!("lock:{minutes}"),
            Callback::CancelSubscription { plan } => format!("sc:{plan}"),
            Callback::Broadcast { id, go } => format!("bc:{id}:{}", if *go { "go" } else { "no" }),
        }
    }
}

// ---- timers ------------------------------------------------------------------------------

/// A chat timer's payload (`Timer::payload`), tagged by `k`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "k", rename_all = "lowercase")]
pub enum TimerKind {
    /// Refresh the "searching…" message of the member named in the timer id
    /// ([`search_timer_id`]): the search started at `t0` (ms), this is refresh number `n`.
    Search { t0: i64, n: i64 },
    /// End the chat of `a` and `b` if it is still the same chat (id: [`idle_timer`]).
    Idle {
        #[serde(with = "member_text")]
        a: Member,
        #[serde(with = "member_text")]
        b: Member,
    },
    /// An admin banned `member` until `until` (ms) (id: [`admin_timer_id`]): end their chat
    /// or search, telling the partner, and tell them. Scheduled by the admin role, which holds
    /// no token, on the member's bot.
    Ban {
        #[serde(with = "member_text")]
        member: Member,
        until: i64,
    },
    /// An admin asked the bot to refund the charge `charge` (`refundStarPayment` needs the
    /// bot's token): refunded at Telegram, then reversed once, as `/refund` does.
    Refund { charge: String, admin: i64 },
}

/// Why a timer's payload could not be read (the timer is dropped with a warning).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimerError {
    #[error("unknown timer kind {0:?}")]
    UnknownKind(Option<String>),
    #[error("malformed {kind} timer: {reason}")]
    Malformed { kind: String, reason: String },
}

impl TimerKind {
    pub fn parse(payload: &Value) -> Result<TimerKind, TimerError> {
        let kind = payload.get("k").and_then(Value::as_str);
        if !matches!(kind, Some("search" | "idle" | "ban" | "refund")) {
            return Err(TimerError::UnknownKind(kind.map(str::to_string)));
        }
        TimerKind::deserialize(payload)
            .map_err(|e| TimerError::Malformed { kind: kind.unwrap_or_default().to_string(), reason: e.to_string() })
    }

    /// The payload as stored. (A JSON object's keys serialize sorted, so the stored text is
    /// the same as release N's `json!` payloads.)
    pub fn render(&self) -> Value {
        match self {
            TimerKind::Search { t0, n } => serde_json::json!({"k": "search", "t0": t0, "n": n}),
            TimerKind::Idle { a, b } => serde_json::json!({"k": "idle", "a": a.to_string(), "b": b.to_string()}),
            TimerKind::Ban { member, until } => serde_json::json!({"k": "ban", "member": member.to_string(), "until": until}),
            TimerKind::Refund { charge, admin } => serde_json::json!({"k": "refund", "charge": charge, "admin": admin}),
        }
    }

    /// The kind's name, as in the payload and the metrics.
    pub fn name(&self) -> &'static str {
        match self {
            TimerKind::Search { .. } => "search",
            TimerKind::Idle { .. } => "idle",
            TimerKind::Ban { .. } => "ban",
            TimerKind::Refund { .. } => "refund",
        }
    }

    /// The timer due at `due_ms` under `id`.
    pub fn at(&self, id: String, due_ms: i64) -> Timer {
        Timer { id, due_ms, payload: self.render() }
    }
}

/// The id of an admin request's timer on the member's bot (`what`: `ban`, `refund:<charge>`).
pub fn admin_timer_id(what: &str, m: &Member) -> String {
    format!("admin:{what}:{m}")
}

/// The id of a member's search-refresh timer (on the member's bot).
pub fn search_timer_id(m: &Member) -> String {
    format!("search:{m}")
}

/// The member whose search a search-refresh timer id refreshes.
pub fn search_timer_member(id: &str) -> Option<Member> {
    id.strip_prefix("search:")?.parse().ok()
}

/// The idle timer of a chat is kept by the bot of the first member (in sort order), so both
/// sides move the same timer: that member and the id.
pub fn idle_timer(a: &Member, b: &Member) -> (Member, String) {
    let (first, second) = if a <= b { (a, b) } else { (b, a) };
    (first.clone(), format!("idle:{first}|{second}"))
}

/// Members travel as their text form (`bot:user`) in timer payloads.
mod member_text {
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::matching::Member;

    pub fn serialize<S: Serializer>(m: &Member, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(m)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Member, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

// ---- once memos --------------------------------------------------------------------------

/// The steps whose results `Effects::once` remembers per update (or timer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnceStep {
    /// A search: its [`SearchMemo`].
    Search,
    /// The user ended their chat: the partner it had (a member), or nothing.
    End,
    /// The user left for good (blocked the bot, deleted the profile): the partner, or nothing.
    Gone,
    /// The idle timer ended the chat: the partner of the first member, or nothing.
    Idle,
    /// A search matched: when (ms), so a retry records the same chat session.
    MatchedAt,
}

impl OnceStep {
    pub fn as_str(self) -> &'static str {
        match self {
            OnceStep::Search => "search",
            OnceStep::End => "end",
            OnceStep::Gone => "gone",
            OnceStep::Idle => "idle",
            OnceStep::MatchedAt => "match_at",
        }
    }
}

/// What a search did, as remembered for a retry of the same update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SearchMemo {
    Matched(Member),
    InChat(Member),
    /// The person holds a chat of the pool through another bot (this member's own twin).
    Elsewhere(Member),
    Queued,
}

impl SearchMemo {
    /// Release N's text form, kept: a replica of either release may read it during a deploy.
    pub fn render(&self) -> String {
        match self {
            SearchMemo::Matched(p) => format!("matched {p}"),
            SearchMemo::InChat(p) => format!("in_chat {p}"),
            SearchMemo::Elsewhere(p) => format!("elsewhere {p}"),
            SearchMemo::Queued => "queued".into(),
        }
    }

    pub fn parse(s: &str) -> Option<SearchMemo> {
        match s.split_once(' ') {
            Some(("matched", p)) => Some(SearchMemo::Matched(p.parse().ok()?)),
            Some(("in_chat", p)) => Some(SearchMemo::InChat(p.parse().ok()?)),
            Some(("elsewhere", p)) => Some(SearchMemo::Elsewhere(p.parse().ok()?)),
            None if s == "queued" => Some(SearchMemo::Queued),
            _ => None,
        }
    }
}

impl From<SearchOutcome> for SearchMemo {
    fn from(o: SearchOutcome) -> Self {
        match o {
            SearchOutcome::Matched { partner } => SearchMemo::Matched(partner),
            SearchOutcome::AlreadyInChat { partner } => SearchMemo::InChat(partner),
            SearchOutcome::BusyElsewhere { holder } => SearchMemo::Elsewhere(holder),
            SearchOutcome::Queued => SearchMemo::Queued,
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn every_callback(id: i64) -> Vec<Callback> {
        let mut all = vec![
            Callback::AcceptTerms,
            Callback::CheckChannels,
            Callback::CancelSearch,
            Callback::EditProfile,
            Callback::DeleteProfile,
            Callback::ConfirmDelete,
            Callback::KeepProfile,
            Callback::Rate { session: id, up: true },
            Callback::Rate { session: id, up: false },
        ];
        all.extend([Gender::Male, Gender::Female, Gender::Other].map(Callback::Gender));
        all.extend(ReportReason::ALL.map(|reason| Callback::ReportReason { report: id, reason }));
        for plan in ["vip-week", "a.b-c", &"p".repeat(60), &"long-plan-name.".repeat(17), "#odd", "a:b"] {
            all.push(Callback::Buy { plan: plan_ref(plan) });
            all.push(Callback::CancelSubscription { plan: plan_ref(plan) });
        }
        all.extend([1, 15, u32::MAX].map(|minutes| Callback::Lock { minutes }));
        all
    }

    #[test]
    fn plan_refs_are_ids_when_they_fit_and_stable_digests_otherwise() {
        assert_eq!(plan_ref("vip-week"), "vip-week");
        let long = "x".repeat(253);
        assert_eq!(plan_ref(&long), plan_ref(&long));
        assert!(plan_ref(&long).starts_with('#') && plan_ref(&long).len() == 17);
        assert_ne!(plan_ref(&long), plan_ref(&"y".repeat(253)));
    }

    #[test]
    fn every_button_parses_back_from_what_it_renders() {
        for id in [0, 1, 42, i64::MAX, i64::MIN] {
            for c in every_callback(id) {
                assert_eq!(Callback::parse(&c.render()), Some(c.clone()), "{c:?}");
            }
        }
    }

    #[test]
    fn every_button_fits_telegrams_callback_data_limit_with_extreme_ids() {
        for id in [i64::MAX, i64::MIN] {
            for c in every_callback(id) {
                assert!(c.render().len() <= MAX_CALLBACK_DATA, "{c:?} renders {} bytes", c.render().len());
            }
        }
    }

    #[test]
    fn buttons_this_release_never_sent_are_stale() {
        for data in [
            "",
            "terms",
            "terms:no",
            "g:x",
            "g:m:1",
            "rate:1:x",
            "rate:abc:u",
            "rate:1",
            "rr:1:rude",
            "rr:x:spam",
            "prof",
            "del:maybe",
            "cancel:1",
            "buy",
            "buy:",
            "buy:a:b",
        ] {
            assert_eq!(Callback::parse(data), None, "{data}");
        }
    }

    #[test]
    fn commands_parse_back_from_what_they_render() {
        let all = [
            Command::Start { payload: None },
            Command::Start { payload: Some("ref_42".into()) },
            Command::Help,
            Command::DeleteMe,
            Command::Report,
            Command::Block,
            Command::Stop,
            Command::Search,
            Command::Next,
            Command::Profile,
            Command::Stats,
            Command::Vip,
            Command::History,
            Command::PaySupport { question: None },
            Command::PaySupport { question: Some("where is my VIP".into()) },
            Command::SaleTerms,
            Command::News { on: None },
            Command::News { on: Some(true) },
            Command::News { on: Some(false) },
            Command::Ban { args: "42 24".into() },
            Command::Unban { args: "42".into() },
            Command::Broadcast { text: "<b>hi</b> all".into() },
            Command::Unknown("shopping".into()),
        ];
        for c in all {
            let text = c.render();
            let rest = text.strip_prefix('/').unwrap_or_default();
            let (name, arg) = rest.split_once(' ').unwrap_or((rest, ""));
            assert_eq!(Command::parse(name, arg), c, "{text}");
        }
        assert_eq!(Command::parse("find", ""), Command::Search);
    }

    #[test]
    fn reply_keyboard_taps_in_either_language_are_commands() {
        for (key, command) in BUTTONS {
            for lang in [Lang::En, Lang::Ru] {
                assert_eq!(Command::of_button(&key.text(lang)), Some(command.clone()), "{key:?} {lang:?}");
            }
        }
        assert_eq!(Command::of_button("hello"), None);
    }

    #[test]
    fn timers_render_what_they_parse_and_unknown_kinds_are_refused() {
        let kinds = [
            TimerKind::Search { t0: i64::MAX, n: 3 },
            TimerKind::Idle { a: Member::new("alpha", 1), b: Member::new("beta", i64::MIN) },
            TimerKind::Ban { member: Member::new("alpha", 7), until: 9 },
            TimerKind::Refund { charge: "ch_1".into(), admin: 42 },
        ];
        for k in kinds {
            assert_eq!(TimerKind::parse(&k.render()), Ok(k.clone()));
            assert_eq!(serde_json::to_value(&k).unwrap(), k.render(), "serde and render agree");
        }
        assert_eq!(TimerKind::parse(&json!({"k": "lock"})), Err(TimerError::UnknownKind(Some("lock".into()))));
        assert_eq!(TimerKind::parse(&json!({"n": 1})), Err(TimerError::UnknownKind(None)));
        assert!(matches!(TimerKind::parse(&json!({"k": "idle", "a": "x", "b": "beta:1"})), Err(TimerError::Malformed { .. })));
        let m = Member::new("alpha", 7);
        assert_eq!(search_timer_member(&search_timer_id(&m)), Some(m));
    }

    #[test]
    fn search_memos_parse_back_from_what_they_render() {
        for memo in [SearchMemo::Matched(Member::new("a", i64::MAX)), SearchMemo::InChat(Member::new("b", 1)), SearchMemo::Queued] {
            assert_eq!(SearchMemo::parse(&memo.render()), Some(memo.clone()));
        }
        assert_eq!(SearchMemo::parse("matched nobody"), None);
        assert_eq!(SearchMemo::parse(""), None);
    }
}
