//! The OpenAPI 3.1 document of `/api/v1`, generated from the code: the bodies' JSON Schemas
//! come from the Rust types the handlers read and write (schemars, already in the build for
//! the CRDs), and the operations from [`OPERATIONS`], the route table a test checks against
//! the router (every documented route answers; see `tests/admin.rs`).

use schemars::JsonSchema;
use schemars::generate::{SchemaGenerator, SchemaSettings};
use serde_json::{Map, Value, json};

use super::ErrorBody;
use super::api::*;
use super::broadcast::{AudienceGift, AudienceGiftAnswer, BroadcastAnswer, BroadcastsAnswer, NewBroadcast, PreviewAnswer};
use super::keys::{KeysAnswer, NewKeyAnswer, NewKeyRequest};
use super::moderation::{BannedAnswer, BlockedAnswer, QueueAnswer, ReviewAnswer, ReviewRequest};
use crate::store::admin::PersonView;

/// Who may call an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Public,
    /// A session (a state change also needs the CSRF token) or an API key.
    Session,
    /// A fleet admin's session only (API keys are refused).
    Owner,
}

/// One documented operation: method, path, summary, access, request body, success status and
/// body, query parameters.
pub struct Operation {
    pub method: &'static str,
    pub path: &'static str,
    pub summary: &'static str,
    pub access: Access,
    pub request: Option<fn(&mut SchemaGenerator) -> schemars::Schema>,
    pub status: u16,
    pub response: fn(&mut SchemaGenerator) -> schemars::Schema,
    pub query: &'static [(&'static str, &'static str)],
}

fn s<T: JsonSchema>(g: &mut SchemaGenerator) -> schemars::Schema {
    g.subschema_for::<T>()
}

fn any_json(_: &mut SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({"type": "object"})
}

fn csv(_: &mut SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({"type": "string"})
}

pub const OPERATIONS: &[Operation] = &[
    Operation {
        method: "get",
        path: "/api/v1/openapi.json",
        summary: "This document",
        access: Access::Public,
        request: None,
        status: 200,
        response: any_json,
        query: &[],
    },
    Operation {
        method: "post",
        path: "/api/v1/login/code",
        summary: "Send a one-time login code to an admin through a bot of the fleet (5 per 15 min per id and per address)",
        access: Access::Public,
        request: Some(s::<CodeRequest>),
        status: 202,
        response: s::<CodeAnswer>,
        query: &[],
    },
    Operation {
        method: "post",
        path: "/api/v1/login",
        summary: "Log in with the code: sets the session cookie, returns the CSRF token (5 tries per 15 min per id and per address)",
        access: Access::Public,
        request: Some(s::<LoginRequest>),
        status: 200,
        response: s::<SessionAnswer>,
        query: &[],
    },
    Operation {
        method: "post",
        path: "/api/v1/logout",
        summary: "End the session",
        access: Access::Session,
        request: None,
        status: 200,
        response: any_json,
        query: &[],
    },
    Operation {
        method: "get",
        path: "/api/v1/session",
        summary: "Who is logged in, and the CSRF token",
        access: Access::Session,
        request: None,
        status: 200,
        response: s::<SessionAnswer>,
        query: &[],
    },
    Operation {
        method: "get",
        path: "/api/v1/bots",
        summary: "The registered bots this admin may act on",
        access: Access::Session,
        request: None,
        status: 200,
        response: s::<BotsAnswer>,
        query: &[],
    },
    Operation {
        method: "get",
        path: "/api/v1/overview",
        summary: "People, new members, VIPs, chats and queues now, each bot's Stars balance, Stars revenue per day (in the fleet's time zone), plan and bot",
        access: Access::Session,
        request: None,
        status: 200,
        response: s::<Overview>,
        query: &[],
    },
    Operation {
        method: "get",
        path: "/api/v1/users",
        summary: "Find people by Telegram id or @username",
        access: Access::Session,
        request: None,
        status: 200,
        response: s::<UsersAnswer>,
        query: &[("id", "a Telegram user id"), ("username", "a Telegram @username")],
    },
    Operation {
        method: "get",
        path: "/api/v1/users/{user_id}",
        summary: "A person: profile, VIP, credits, reports and chat counts per bot (never content)",
        access: Access::Session,
        request: None,
        status: 200,
        response: s::<PersonView>,
        query: &[],
    },
    Operation {
        method: "post",
        path: "/api/v1/users/{user_id}/ban",
        summary: "Ban fleet-wide (fleet admins) or on one bot; ends a running chat",
        access: Access::Session,
        request: Some(s::<BanRequest>),
        status: 200,
        response: s::<BanAnswer>,
        query: &[],
    },
    Operation {
        method: "post",
        path: "/api/v1/users/{user_id}/unban",
        summary: "Lift a fleet-wide or one bot's ban",
        access: Access::Session,
        request: Some(s::<UnbanRequest>),
        status: 200,
        response: any_json,
        query: &[],
    },
    Operation {
        method: "post",
        path: "/api/v1/users/{user_id}/gift",
        summary: "Gift VIP days and/or credits to a member (idempotent per key)",
        access: Access::Session,
        request: Some(s::<GiftRequest>),
        status: 200,
        response: s::<GiftAnswer>,
        query: &[],
    },
    Operation {
        method: "post",
        path: "/api/v1/refunds",
        summary: "Refund a purchase: the bot's runtime refunds it at Telegram and reverses the grant",
        access: Access::Session,
        request: Some(s::<RefundRequest>),
        status: 202,
        response: s::<RefundAnswer>,
        query: &[],
    },
    Operation {
        method: "get",
        path: "/api/v1/audit",
        summary: "The audit log, newest first (fleet admins)",
        access: Access::Session,
        request: None,
        status: 200,
        response: s::<AuditAnswer>,
        query: &[("before", "an entry id: older entries only"), ("limit", "1 to 500, default 100")],
    },
    Operation {
        method: "get",
        path: "/api/v1/audit.csv",
        summary: "The audit log as CSV (fleet admins)",
        access: Access::Session,
        request: None,
        status: 200,
        response: csv,
        query: &[("before", "an entry id: older entries only"), ("limit", "1 to 100000, default 10000")],
    },
    Operation {
        method: "get",
        path: "/api/v1/payments.csv",
        summary: "Payments as CSV (every bot's for fleet admins, their bots' for bot admins); audited",
        access: Access::Session,
        request: None,
        status: 200,
        response: csv,
        query: &[("from", "ms since the epoch (default: 31 days ago)"), ("to", "ms since the epoch, exclusive (default: now)")],
    },
    Operation {
        method: "get",
        path: "/api/v1/moderation/reports",
        summary: "The moderation queue: members of this admin's bots with open reports, or many 👎 without one (metadata only, never content)",
        access: Access::Session,
        request: None,
        status: 200,
        response: s::<QueueAnswer>,
        query: &[],
    },
    Operation {
        method: "post",
        path: "/api/v1/moderation/reports/{user_id}/review",
        summary: "Review a reported member: dismiss, restrict for a time or ban (closes their open reports)",
        access: Access::Session,
        request: Some(s::<ReviewRequest>),
        status: 200,
        response: s::<ReviewAnswer>,
        query: &[],
    },
    Operation {
        method: "get",
        path: "/api/v1/moderation/banned",
        summary: "Bans and restrictions in force (fleet-wide ones for fleet admins)",
        access: Access::Session,
        request: None,
        status: 200,
        response: s::<BannedAnswer>,
        query: &[],
    },
    Operation {
        method: "get",
        path: "/api/v1/moderation/blocked",
        summary: "Members of this admin's bots that other members blocked, most blockers first (never who blocked them)",
        access: Access::Session,
        request: None,
        status: 200,
        response: s::<BlockedAnswer>,
        query: &[],
    },
    Operation {
        method: "get",
        path: "/api/v1/broadcasts",
        summary: "The broadcasts of this admin's bots, with their progress",
        access: Access::Session,
        request: None,
        status: 200,
        response: s::<BroadcastsAnswer>,
        query: &[],
    },
    Operation {
        method: "post",
        path: "/api/v1/broadcasts",
        summary: "Start (or schedule) a broadcast to a bot's members, or to several bots' (one broadcast each) (all, VIP or free; a language; active since a day; /news off respected), queued at the bot's pace; `paid`: sent with Telegram's allow_paid_broadcast at the bot's paid pace, 0.1 Star a message",
        access: Access::Session,
        request: Some(s::<NewBroadcast>),
        status: 201,
        response: s::<BroadcastAnswer>,
        query: &[],
    },
    Operation {
        method: "post",
        path: "/api/v1/gifts",
        summary: "Gift VIP days and/or credits to every member of an audience (a broadcast's filters, one bot, several or all), once per member and key",
        access: Access::Session,
        request: Some(s::<AudienceGift>),
        status: 200,
        response: s::<AudienceGiftAnswer>,
        query: &[],
    },
    Operation {
        method: "post",
        path: "/api/v1/broadcasts/preview",
        summary: "Check a broadcast without sending it: its preview (checked Telegram HTML, links http(s)/tg only), the audience's size now, and per bot its pace and, for a paid broadcast (`paid`), the estimated Stars cost against the bot's Stars balance",
        access: Access::Session,
        request: Some(s::<NewBroadcast>),
        status: 200,
        response: s::<PreviewAnswer>,
        query: &[],
    },
    Operation {
        method: "post",
        path: "/api/v1/broadcasts/{broadcast_id}/cancel",
        summary: "Stop a running broadcast (messages already queued are still sent) or cancel a scheduled one",
        access: Access::Session,
        request: None,
        status: 200,
        response: any_json,
        query: &[],
    },
    Operation {
        method: "get",
        path: "/api/v1/analytics",
        summary: "Funnel, D1/D7/D30 retention by signup week, revenue by plan and campaign, reconciliation mismatches (from rollups refreshed incrementally)",
        access: Access::Session,
        request: None,
        status: 200,
        response: s::<super::analytics::AnalyticsAnswer>,
        query: &[("weeks", "weeks back, 1 to 104 (default 12)"), ("bot", "one of your bots, <namespace>/<name> (default: all of them)")],
    },
    Operation {
        method: "get",
        path: "/api/v1/pricing",
        summary: "Each bot's effective plans and campaigns (from its registered configuration) with the kubectl command that changes each",
        access: Access::Session,
        request: None,
        status: 200,
        response: s::<super::pricing::PricingAnswer>,
        query: &[],
    },
    Operation {
        method: "get",
        path: "/api/v1/keys",
        summary: "The API keys (never the keys themselves); fleet admins with a session",
        access: Access::Owner,
        request: None,
        status: 200,
        response: s::<KeysAnswer>,
        query: &[],
    },
    Operation {
        method: "post",
        path: "/api/v1/keys",
        summary: "Make an API key with a role of the permission matrix; the key is in this answer only",
        access: Access::Owner,
        request: Some(s::<NewKeyRequest>),
        status: 201,
        response: s::<NewKeyAnswer>,
        query: &[],
    },
    Operation {
        method: "post",
        path: "/api/v1/keys/{key_id}/revoke",
        summary: "Revoke an API key (at once, on every replica)",
        access: Access::Owner,
        request: None,
        status: 200,
        response: any_json,
        query: &[],
    },
];

/// The JSON Schema of a query parameter, by route and name: exactly what the handler accepts
/// (a string unless listed here; a new query parameter that is not a free string belongs here).
fn query_schema(path: &str, name: &str) -> Value {
    let int64 = |min: i64, max: i64| json!({"type": "integer", "format": "int64", "minimum": min, "maximum": max});
    match (path, name) {
        (_, "id") => int64(1, i64::MAX),
        // Leading `@`s are dropped; then letters, digits and underscores.
        (_, "username") => json!({"type": "string", "pattern": "^@*[A-Za-z0-9_]{1,64}$"}),
        (_, "before" | "from" | "to") => int64(i64::MIN, i64::MAX),
        ("/api/v1/audit", "limit") => int64(1, 500),
        ("/api/v1/audit.csv", "limit") => int64(1, 100_000),
        ("/api/v1/analytics", "weeks") => int64(1, 104),
        _ => json!({"type": "string"}),
    }
}

/// A link of the document (OpenAPI "links"): a value of one operation's answer that another
/// operation takes, so a client — and schemathesis's stateful tests — can chain them (a
/// broadcast just made → its cancel). `from` and `to` are (method, path); `parameters` maps the
/// target's parameter to a runtime expression over the answer.
pub struct Link {
    pub from: (&'static str, &'static str),
    pub status: u16,
    pub name: &'static str,
    pub to: (&'static str, &'static str),
    pub parameters: &'static [(&'static str, &'static str)],
}

const USER: &str = "/api/v1/users/{user_id}";
const BAN: &str = "/api/v1/users/{user_id}/ban";
const UNBAN: &str = "/api/v1/users/{user_id}/unban";
const GIFT: &str = "/api/v1/users/{user_id}/gift";
const REVIEW: &str = "/api/v1/moderation/reports/{user_id}/review";
const CANCEL: &str = "/api/v1/broadcasts/{broadcast_id}/cancel";
const REVOKE: &str = "/api/v1/keys/{key_id}/revoke";

pub const LINKS: &[Link] = &[
    Link {
        from: ("get", "/api/v1/users"),
        status: 200,
        name: "TheFirstUser",
        to: ("get", USER),
        parameters: &[("user_id", "$response.body#/users/0/user_id")],
    },
    Link {
        from: ("get", "/api/v1/users"),
        status: 200,
        name: "BanTheFirstUser",
        to: ("post", BAN),
        parameters: &[("user_id", "$response.body#/users/0/user_id")],
    },
    Link {
        from: ("get", USER),
        status: 200,
        name: "BanThisUser",
        to: ("post", BAN),
        parameters: &[("user_id", "$response.body#/user_id")],
    },
    Link {
        from: ("get", USER),
        status: 200,
        name: "GiftThisUser",
        to: ("post", GIFT),
        parameters: &[("user_id", "$response.body#/user_id")],
    },
    Link { from: ("post", BAN), status: 200, name: "Unban", to: ("post", UNBAN), parameters: &[("user_id", "$response.body#/user_id")] },
    Link {
        from: ("post", BAN),
        status: 200,
        name: "TheBannedUser",
        to: ("get", USER),
        parameters: &[("user_id", "$response.body#/user_id")],
    },
    Link {
        from: ("post", GIFT),
        status: 200,
        name: "TheGiftedUser",
        to: ("get", USER),
        parameters: &[("user_id", "$response.body#/user_id")],
    },
    Link {
        from: ("get", "/api/v1/moderation/reports"),
        status: 200,
        name: "ReviewTheFirst",
        to: ("post", REVIEW),
        parameters: &[("user_id", "$response.body#/items/0/user_id")],
    },
    Link {
        from: ("get", "/api/v1/moderation/banned"),
        status: 200,
        name: "LiftTheFirst",
        to: ("post", UNBAN),
        parameters: &[("user_id", "$response.body#/entries/0/user_id")],
    },
    Link {
        from: ("post", "/api/v1/broadcasts"),
        status: 201,
        name: "Cancel",
        to: ("post", CANCEL),
        parameters: &[("broadcast_id", "$response.body#/broadcast/id")],
    },
    Link {
        from: ("get", "/api/v1/moderation/blocked"),
        status: 200,
        name: "TheFirstBlocked",
        to: ("get", USER),
        parameters: &[("user_id", "$response.body#/entries/0/user_id")],
    },
    Link {
        from: ("get", "/api/v1/broadcasts"),
        status: 200,
        name: "CancelTheNewest",
        to: ("post", CANCEL),
        parameters: &[("broadcast_id", "$response.body#/broadcasts/0/id")],
    },
    Link {
        from: ("post", "/api/v1/keys"),
        status: 201,
        name: "Revoke",
        to: ("post", REVOKE),
        parameters: &[("key_id", "$response.body#/key/id")],
    },
    Link {
        from: ("get", "/api/v1/keys"),
        status: 200,
        name: "RevokeTheFirst",
        to: ("post", REVOKE),
        parameters: &[("key_id", "$response.body#/keys/0/id")],
    },
    Link {
        from: ("get", "/api/v1/audit"),
        status: 200,
        name: "OlderEntries",
        to: ("get", "/api/v1/audit"),
        parameters: &[("before", "$response.body#/next_before")],
    },
];

/// An operation's id in the document: its method and path (`post_api_v1_users_user_id_ban`).
pub fn operation_id(method: &str, path: &str) -> String {
    let words: Vec<&str> = path.split(|c: char| !c.is_ascii_alphanumeric()).filter(|w| !w.is_empty()).collect();
    format!("{method}_{}", words.join("_"))
}

pub fn document() -> Value {
    let mut g = SchemaSettings::draft2020_12().with(|s| s.definitions_path = "#/components/schemas/".into()).into_generator();
    let error = g.subschema_for::<ErrorBody>();
    let mut paths = Map::new();
    for op in OPERATIONS {
        let mut o = Map::new();
        o.insert("operationId".into(), json!(operation_id(op.method, op.path)));
        o.insert("summary".into(), json!(op.summary));
        let mut params: Vec<Value> = op
            .query
            .iter()
            .map(|(n, d)| json!({"name": n, "in": "query", "required": false, "description": d, "schema": query_schema(op.path, n)}))
            .collect();
        if op.path.contains("{user_id}") {
            params.push(
                json!({"name": "user_id", "in": "path", "required": true, "schema": {"type": "integer", "format": "int64", "minimum": 1, "maximum": i64::MAX}}),
            );
        }
        if op.path.contains("{broadcast_id}") {
            params.push(json!({"name": "broadcast_id", "in": "path", "required": true, "schema": {"type": "integer", "format": "int64", "minimum": 1}}));
        }
        if op.path.contains("{key_id}") {
            params
                .push(json!({"name": "key_id", "in": "path", "required": true, "schema": {"type": "string", "pattern": "^[0-9a-f]{16}$"}}));
        }
        if op.access != Access::Public && op.method != "get" {
            let required = op.access == Access::Owner;
            params.push(json!({"name": "X-CSRF-Token", "in": "header", "required": required, "description": "the csrf_token of the login answer: needed with a session, not with an API key", "schema": {"type": "string"}}));
        }
        if !params.is_empty() {
            o.insert("parameters".into(), Value::Array(params));
        }
        if let Some(req) = op.request {
            let schema = req(&mut g);
            o.insert(
                "requestBody".into(),
                // JSON only: a form-encoded post is the dashboard's (pages::form_posts answers it
                // with a page or a redirect, not with these answers).
                json!({"required": true, "content": {"application/json": {"schema": schema}}}),
            );
        }
        let kind = if op.path.ends_with(".csv") { "text/csv" } else { "application/json" };
        let body = (op.response)(&mut g);
        let mut responses = Map::new();
        let mut success = json!({"description": "success", "content": {kind: {"schema": body}}});
        let links: Map<String, Value> = LINKS
            .iter()
            .filter(|l| l.from == (op.method, op.path) && l.status == op.status)
            .map(|l| {
                let parameters: Map<String, Value> = l.parameters.iter().map(|(k, v)| (k.to_string(), json!(v))).collect();
                (l.name.to_string(), json!({"operationId": operation_id(l.to.0, l.to.1), "parameters": parameters}))
            })
            .collect();
        if !links.is_empty() {
            success["links"] = Value::Object(links);
        }
        responses.insert(op.status.to_string(), success);
        let err = |d: &str| json!({"description": d, "content": {"application/json": {"schema": error.clone()}}});
        responses.insert("400".into(), err("bad input: the message says what is wrong"));
        if op.access != Access::Public {
            responses.insert("401".into(), err("no session (or it expired or ended), or an unknown or revoked API key"));
            responses.insert("403".into(), err("wrong CSRF token, or not this admin's bot or route"));
            responses.insert("404".into(), err("no such user, bot, payment or key (as far as this admin may see)"));
            responses.insert(
                "429".into(),
                err("over the route's requests per minute (the bot's RateLimitPolicy adminApiPerMinute, else the chart's value), or an API key over its own limit; Retry-After says when to try again"),
            );
            if op.method == "post" {
                responses.insert("409".into(), err("not in a state for this (a broadcast that ended, a payment refunded already)"));
            }
        } else if op.path.starts_with("/api/v1/login") {
            responses.insert("401".into(), err("wrong, used or expired code"));
            responses.insert("429".into(), err("too many tries in 15 minutes"));
        } else {
            responses.insert(
                "429".into(),
                err("over the fleet routes' requests per minute (the chart's value); Retry-After says when to try again"),
            );
        }
        responses.insert("503".into(), err("the database or Redis is unavailable"));
        o.insert("responses".into(), Value::Object(responses));
        match op.access {
            Access::Session => o.insert("security".into(), json!([{"session": []}, {"apiKey": []}])),
            Access::Owner => o.insert("security".into(), json!([{"session": []}])),
            Access::Public => None,
        };
        let entry = paths.entry(op.path).or_insert_with(|| json!({}));
        if let Some(m) = entry.as_object_mut() {
            m.insert(op.method.into(), Value::Object(o));
        }
    }
    json!({
        "openapi": "3.1.0",
        "info": {"title": "BotFleet admin API", "version": env!("CARGO_PKG_VERSION"), "description": "docs/ADMIN.md: roles, the permission matrix, login and CSRF. Bodies are JSON; the dashboard's HTML forms post form-encoded bodies to the same routes and get a page back (a 303 to the page they came from, or an error page), which this document does not describe."},
        "paths": paths,
        "components": {
            "schemas": g.take_definitions(true),
            "securitySchemes": {
                "session": {"type": "apiKey", "in": "cookie", "name": super::auth::COOKIE},
                "apiKey": {"type": "http", "scheme": "bearer", "description": "an API key, bfk_…, made by a fleet admin (no CSRF token needed)"},
            },
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every link joins two documented operations, from the answer its source documents, to
    /// parameters its target has; operation ids are unique.
    /// The broadcast's and the gift's requests share their audience fields (one flattened
    /// struct): the document still lists every field of both, with the filter's constraints,
    /// and says that a bot (or a list of bots) must be named.
    #[test]
    fn the_shared_audience_fields_are_documented_on_both_requests() {
        let doc = document();
        for (path, own) in
            [("/api/v1/broadcasts", &["text", "start_at"][..]), ("/api/v1/gifts", &["vip_days", "credits", "idempotency_key"][..])]
        {
            let mut schema = doc["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"].clone();
            if let Some(r) = schema["$ref"].as_str() {
                let name = r.trim_start_matches("#/components/schemas/");
                schema = doc["components"]["schemas"][name].clone();
            }
            let props = schema["properties"].as_object().unwrap_or_else(|| panic!("{path}: properties in {schema}"));
            for field in ["bot", "bots", "audience", "language", "active_since"].iter().chain(own) {
                assert!(props.contains_key(*field), "{path} documents {field}: {schema}");
            }
            assert_eq!(props["bots"]["maxItems"], 100, "{path}");
            assert!(props["language"]["pattern"].is_string(), "{path}");
            let text = schema.to_string();
            assert!(text.contains(r#"{"required":["bot"]}"#), "{path} needs bot or bots: {text}");
            assert!(!schema["description"].as_str().unwrap_or_default().starts_with("Who"), "{path} has its own description");
        }
    }

    #[test]
    fn links_join_documented_operations_and_ids_are_unique() {
        let doc = document();
        let mut ids = std::collections::HashSet::new();
        for op in OPERATIONS {
            assert!(ids.insert(operation_id(op.method, op.path)), "{} {} has a unique id", op.method, op.path);
        }
        for l in LINKS {
            let from = &doc["paths"][l.from.1][l.from.0];
            assert!(from["responses"][l.status.to_string()]["links"][l.name].is_object(), "link {} is in the document", l.name);
            let to = &doc["paths"][l.to.1][l.to.0];
            let params: Vec<&str> = to["parameters"].as_array().into_iter().flatten().filter_map(|p| p["name"].as_str()).collect();
            for (name, expr) in l.parameters {
                assert!(params.contains(name), "link {}: {} {} takes {name}", l.name, l.to.0, l.to.1);
                assert!(expr.starts_with("$response.body#/"), "link {}: {expr}", l.name);
            }
        }
    }
}
