use botfleet_tests::fake_telegram::{InboxEvent, Limits};
use serde_json::json;

use crate::{drain_updates, setup};

#[tokio::test]
async fn message_ids_count_per_chat_across_both_sides() {
    let s = setup().await;
    // The user's /start was message 1 of this chat.
    let reply = s.api.call("sendMessage", json!({"chat_id": s.user.id, "text": "hello"})).await.unwrap();
    assert_eq!(reply["message_id"], 2);
    let user_msg = s.sim.send_text(&s.bot.username, s.user.id, "hi", None).unwrap();
    assert_eq!(user_msg["message_id"], 3);
    let other = s.sim.user("Bob", None).unwrap();
    let first_of_other = s.sim.send_text(&s.bot.username, other.id, "/start", None).unwrap();
    assert_eq!(first_of_other["message_id"], 1, "another chat has its own sequence");
}

#[tokio::test]
async fn html_parse_mode_becomes_entities_and_bad_html_is_refused() {
    let s = setup().await;
    let msg = s
        .api
        .call("sendMessage", json!({"chat_id": s.user.id, "text": "<b>Hi</b> <i>there</i> &amp; you", "parse_mode": "HTML"}))
        .await
        .unwrap();
    assert_eq!(msg["text"], "Hi there & you");
    assert_eq!(msg["entities"], json!([{"type": "bold", "offset": 0, "length": 2}, {"type": "italic", "offset": 3, "length": 5}]));
    let err = s.api.call("sendMessage", json!({"chat_id": s.user.id, "text": "<blink>x</blink>", "parse_mode": "HTML"})).await.unwrap_err();
    assert_eq!(err.code, 400);
    assert!(err.description.starts_with("Bad Request: can't parse entities: Unsupported start tag \"blink\""), "{}", err.description);
}

#[tokio::test]
async fn inline_keyboards_are_kept_and_reply_keyboards_are_accepted() {
    let s = setup().await;
    s.sim.set_limits(Limits { enabled: false, ..Limits::default() }).unwrap();
    let inline =
        json!({"inline_keyboard": [[{"text": "Find partner", "callback_data": "find"}, {"text": "Site", "url": "https://example.org"}]]});
    let msg = s.api.call("sendMessage", json!({"chat_id": s.user.id, "text": "menu", "reply_markup": inline})).await.unwrap();
    assert_eq!(msg["reply_markup"], inline);
    let reply_kb = json!({"keyboard": [[{"text": "Next"}, "Stop"]], "resize_keyboard": true});
    let msg = s.api.call("sendMessage", json!({"chat_id": s.user.id, "text": "chat", "reply_markup": reply_kb})).await.unwrap();
    assert!(msg.get("reply_markup").is_none(), "reply keyboards are not part of the Message");
    s.api.call("sendMessage", json!({"chat_id": s.user.id, "text": "bye", "reply_markup": {"remove_keyboard": true}})).await.unwrap();
}

#[tokio::test]
async fn replies_quote_the_original_or_fail_unless_allowed_without_it() {
    let s = setup().await;
    let user_msg = s.sim.send_text(&s.bot.username, s.user.id, "question", None).unwrap();
    let reply = s
        .api
        .call("sendMessage", json!({"chat_id": s.user.id, "text": "answer", "reply_parameters": {"message_id": user_msg["message_id"]}}))
        .await
        .unwrap();
    assert_eq!(reply["reply_to_message"]["text"], "question");
    let err =
        s.api.call("sendMessage", json!({"chat_id": s.user.id, "text": "x", "reply_parameters": {"message_id": 999}})).await.unwrap_err();
    assert_eq!(err.description, "Bad Request: message to be replied not found");
    let ok = s
        .api
        .call(
            "sendMessage",
            json!({"chat_id": s.user.id, "text": "x", "reply_parameters": {"message_id": 999, "allow_sending_without_reply": true}}),
        )
        .await
        .unwrap();
    assert!(ok.get("reply_to_message").is_none());
    // The user replying to the bot: the update carries reply_to_message.
    let user_reply = s.sim.send_text(&s.bot.username, s.user.id, "thanks", reply["message_id"].as_i64()).unwrap();
    assert_eq!(user_reply["reply_to_message"]["message_id"], reply["message_id"]);
}

#[tokio::test]
async fn copy_message_hides_the_sender_and_returns_only_the_new_id() {
    let s = setup().await;
    let bob = s.sim.user("Bob", None).unwrap();
    s.sim.send_text(&s.bot.username, bob.id, "/start", None).unwrap();
    let original = s.sim.send_text(&s.bot.username, s.user.id, "secret hello", None).unwrap();
    let copied = s
        .api
        .call("copyMessage", json!({"chat_id": bob.id, "from_chat_id": s.user.id, "message_id": original["message_id"]}))
        .await
        .unwrap();
    assert_eq!(copied, json!({"message_id": 2}));
    let inbox = s.sim.inbox(bob.id, None, 0).unwrap();
    let InboxEvent::Message { message } = &inbox.last().unwrap().event else { panic!("a message") };
    assert_eq!(message["text"], "secret hello");
    assert_eq!(message["from"]["id"], s.bot.id, "the copy comes from the bot, not from Ann");
    assert!(message.get("forward_origin").is_none());
    let err = s.api.call("copyMessage", json!({"chat_id": bob.id, "from_chat_id": s.user.id, "message_id": 4242})).await.unwrap_err();
    assert_eq!(err.description, "Bad Request: message to copy not found");
}

#[tokio::test]
async fn copy_messages_skips_missing_ones_and_needs_increasing_ids() {
    let s = setup().await;
    s.sim.set_limits(Limits { enabled: false, ..Limits::default() }).unwrap();
    let bob = s.sim.user("Bob", None).unwrap();
    s.sim.send_text(&s.bot.username, bob.id, "/start", None).unwrap();
    let a = s.sim.send_text(&s.bot.username, s.user.id, "one", None).unwrap();
    let b = s.sim.send_text(&s.bot.username, s.user.id, "two", None).unwrap();
    let ids = s.api.call("copyMessages", json!({"chat_id": bob.id, "from_chat_id": s.user.id, "message_ids": [a["message_id"], 777, b["message_id"].as_i64().unwrap() + 1000]})).await.unwrap();
    assert_eq!(ids.as_array().unwrap().len(), 1);
    let err = s
        .api
        .call("copyMessages", json!({"chat_id": bob.id, "from_chat_id": s.user.id, "message_ids": [b["message_id"], a["message_id"]]}))
        .await
        .unwrap_err();
    assert_eq!(err.code, 400);
}

#[tokio::test]
async fn forward_message_shows_its_origin() {
    let s = setup().await;
    let original = s.sim.send_text(&s.bot.username, s.user.id, "fwd me", None).unwrap();
    let fwd = s
        .api
        .call("forwardMessage", json!({"chat_id": s.user.id, "from_chat_id": s.user.id, "message_id": original["message_id"]}))
        .await
        .unwrap();
    assert_eq!(fwd["forward_origin"]["type"], "user");
    assert_eq!(fwd["forward_origin"]["sender_user"]["id"], s.user.id);
    assert_eq!(fwd["text"], "fwd me");
}

#[tokio::test]
async fn edits_change_the_message_and_identical_edits_are_refused() {
    let s = setup().await;
    let kb = json!({"inline_keyboard": [[{"text": "Cancel", "callback_data": "cancel"}]]});
    let msg = s.api.call("sendMessage", json!({"chat_id": s.user.id, "text": "Searching… 0s", "reply_markup": kb})).await.unwrap();
    let id = msg["message_id"].clone();
    let edited = s
        .api
        .call("editMessageText", json!({"chat_id": s.user.id, "message_id": id, "text": "Searching… 5s", "reply_markup": kb}))
        .await
        .unwrap();
    assert_eq!(edited["text"], "Searching… 5s");
    assert!(edited["edit_date"].is_i64());
    let err = s
        .api
        .call("editMessageText", json!({"chat_id": s.user.id, "message_id": id, "text": "Searching… 5s", "reply_markup": kb}))
        .await
        .unwrap_err();
    assert!(err.description.starts_with("Bad Request: message is not modified"), "{}", err.description);
    let no_kb = s.api.call("editMessageReplyMarkup", json!({"chat_id": s.user.id, "message_id": id})).await.unwrap();
    assert!(no_kb.get("reply_markup").is_none());
    let err = s.api.call("editMessageText", json!({"chat_id": s.user.id, "message_id": 999, "text": "x"})).await.unwrap_err();
    assert_eq!(err.description, "Bad Request: message to edit not found");
    let user_msg = s.sim.send_text(&s.bot.username, s.user.id, "mine", None).unwrap();
    let err =
        s.api.call("editMessageText", json!({"chat_id": s.user.id, "message_id": user_msg["message_id"], "text": "x"})).await.unwrap_err();
    assert_eq!(err.description, "Bad Request: message can't be edited");
    let inbox = s.sim.inbox(s.user.id, Some("alpha_bot"), 0).unwrap();
    let edits = inbox.iter().filter(|e| matches!(e.event, InboxEvent::Edited { .. })).count();
    assert_eq!(edits, 2);
}

#[tokio::test]
async fn delete_message_removes_it_once() {
    let s = setup().await;
    let msg = s.api.call("sendMessage", json!({"chat_id": s.user.id, "text": "temp"})).await.unwrap();
    assert_eq!(s.api.call("deleteMessage", json!({"chat_id": s.user.id, "message_id": msg["message_id"]})).await.unwrap(), true);
    let err = s.api.call("deleteMessage", json!({"chat_id": s.user.id, "message_id": msg["message_id"]})).await.unwrap_err();
    assert_eq!(err.description, "Bad Request: message to delete not found");
    let inbox = s.sim.inbox(s.user.id, None, 0).unwrap();
    assert!(matches!(inbox.last().unwrap().event, InboxEvent::Deleted { message_id } if json!(message_id) == msg["message_id"]));
}

#[tokio::test]
async fn pressing_a_button_sends_a_callback_query_answered_once() {
    let s = setup().await;
    let kb = json!({"inline_keyboard": [[{"text": "Male", "callback_data": "gender:m"}]]});
    let msg = s.api.call("sendMessage", json!({"chat_id": s.user.id, "text": "Gender?", "reply_markup": kb})).await.unwrap();
    drain_updates(&s.api).await;
    assert!(s.sim.press_button("alpha_bot", s.user.id, msg["message_id"].as_i64().unwrap(), "gender:x").is_err(), "no such button");
    let id = s.sim.press_button("alpha_bot", s.user.id, msg["message_id"].as_i64().unwrap(), "gender:m").unwrap();
    let updates = drain_updates(&s.api).await;
    assert_eq!(updates.len(), 1);
    let q = &updates[0]["callback_query"];
    assert_eq!(q["id"], id);
    assert_eq!(q["data"], "gender:m");
    assert_eq!(q["message"]["message_id"], msg["message_id"]);
    assert_eq!(s.api.call("answerCallbackQuery", json!({"callback_query_id": id, "text": "Saved"})).await.unwrap(), true);
    let err = s.api.call("answerCallbackQuery", json!({"callback_query_id": id})).await.unwrap_err();
    assert!(err.description.contains("query is too old"), "{}", err.description);
    let inbox = s.sim.inbox(s.user.id, None, 0).unwrap();
    assert!(inbox.iter().any(|e| matches!(&e.event, InboxEvent::CallbackAnswer { text: Some(t), .. } if t == "Saved")));
}

#[tokio::test]
async fn get_chat_member_reports_channel_membership_set_by_the_sim() {
    let s = setup().await;
    s.sim.add_channel("@news", "News", None).unwrap();
    let left = s.api.call("getChatMember", json!({"chat_id": "@news", "user_id": s.user.id})).await.unwrap();
    assert_eq!(left["status"], "left");
    s.sim.set_membership("@news", s.user.id, "member").unwrap();
    let member = s.api.call("getChatMember", json!({"chat_id": "@NEWS", "user_id": s.user.id})).await.unwrap();
    assert_eq!(member["status"], "member");
    assert_eq!(member["user"]["id"], s.user.id);
    for status in ["administrator", "creator", "restricted", "kicked"] {
        s.sim.set_membership("news", s.user.id, status).unwrap();
        let m = s.api.call("getChatMember", json!({"chat_id": "@news", "user_id": s.user.id})).await.unwrap();
        assert_eq!(m["status"], status);
    }
    let err = s.api.call("getChatMember", json!({"chat_id": "@nowhere", "user_id": s.user.id})).await.unwrap_err();
    assert_eq!(err.description, "Bad Request: chat not found");
    let other = s.sim.register_bot("beta_bot").unwrap();
    s.sim.add_channel("@private_club", "Club", Some(vec!["beta_bot".into()])).unwrap();
    let err = s.api.call("getChatMember", json!({"chat_id": "@private_club", "user_id": s.user.id})).await.unwrap_err();
    assert_eq!(err.description, "Bad Request: member list is inaccessible");
    let beta = botfleet_tests::bot_api::RawBot::new(&s.fake.api_url(), &other.token);
    assert_eq!(beta.call("getChatMember", json!({"chat_id": "@private_club", "user_id": s.user.id})).await.unwrap()["status"], "left");
}

#[tokio::test]
async fn set_my_commands_validates_and_stores_per_language() {
    let s = setup().await;
    let cmds = json!([{"command": "start", "description": "Start"}, {"command": "profile", "description": "Profile"}]);
    assert_eq!(s.api.call("setMyCommands", json!({"commands": cmds})).await.unwrap(), true);
    assert_eq!(
        s.api
            .call("setMyCommands", json!({"commands": [{"command": "start", "description": "Начать"}], "language_code": "ru"}))
            .await
            .unwrap(),
        true
    );
    assert_eq!(s.api.call("getMyCommands", json!({})).await.unwrap(), cmds);
    assert_eq!(s.api.call("getMyCommands", json!({"language_code": "ru"})).await.unwrap()[0]["description"], "Начать");
    let err = s.api.call("setMyCommands", json!({"commands": [{"command": "Bad-Cmd", "description": "x"}]})).await.unwrap_err();
    assert_eq!(err.description, "Bad Request: BOT_COMMAND_INVALID");
}

#[tokio::test]
async fn a_bot_cannot_write_first_and_blocked_bots_get_403() {
    let s = setup().await;
    let stranger = s.sim.user("Eve", None).unwrap();
    let err = s.api.call("sendMessage", json!({"chat_id": stranger.id, "text": "hi"})).await.unwrap_err();
    assert_eq!((err.code, err.description.as_str()), (403, "Forbidden: bot can't initiate conversation with a user"));
    drain_updates(&s.api).await;
    s.sim.block("alpha_bot", s.user.id).unwrap();
    let err = s.api.call("sendMessage", json!({"chat_id": s.user.id, "text": "hi"})).await.unwrap_err();
    assert_eq!((err.code, err.description.as_str()), (403, "Forbidden: bot was blocked by the user"));
    let updates = drain_updates(&s.api).await;
    assert_eq!(updates[0]["my_chat_member"]["new_chat_member"]["status"], "kicked");
    assert_eq!(updates[0]["my_chat_member"]["old_chat_member"]["status"], "member");
    // Writing to the bot again restarts it (Telegram's "Restart" button).
    s.sim.send_text("alpha_bot", s.user.id, "/start", None).unwrap();
    let updates = drain_updates(&s.api).await;
    assert_eq!(updates[0]["my_chat_member"]["new_chat_member"]["status"], "member");
    assert_eq!(updates[1]["message"]["text"], "/start");
    assert!(s.api.call("sendMessage", json!({"chat_id": s.user.id, "text": "welcome back"})).await.is_ok());
}

#[tokio::test]
async fn commands_from_users_carry_a_bot_command_entity() {
    let s = setup().await;
    drain_updates(&s.api).await;
    s.sim.send_text("alpha_bot", s.user.id, "/start ref_ABC123", None).unwrap();
    let updates = drain_updates(&s.api).await;
    assert_eq!(updates[0]["message"]["entities"], json!([{"type": "bot_command", "offset": 0, "length": 6}]));
}

/// Many clients at once (as many runtime replicas would be): nothing lost, no id reused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_sends_get_unique_consecutive_ids_and_all_arrive() {
    let s = setup().await;
    s.sim.set_limits(Limits { enabled: false, ..Limits::default() }).unwrap();
    let mut tasks = Vec::new();
    for t in 0..16 {
        let api = s.api.clone();
        let chat = s.user.id;
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for i in 0..25 {
                let m = api.call("sendMessage", json!({"chat_id": chat, "text": format!("{t}-{i}")})).await.unwrap();
                ids.push(m["message_id"].as_i64().unwrap());
            }
            ids
        }));
    }
    let mut ids = Vec::new();
    for t in tasks {
        ids.extend(t.await.unwrap());
    }
    ids.sort();
    let expected: Vec<i64> = (2..2 + 400).collect();
    assert_eq!(ids, expected, "ids 2..=401, each once (1 was /start)");
    assert_eq!(s.sim.inbox(s.user.id, None, 0).unwrap().len(), 400);
}

#[tokio::test]
async fn unblocking_restores_sends_and_tells_the_bot() {
    let s = setup().await;
    drain_updates(&s.api).await;
    s.sim.block("alpha_bot", s.user.id).unwrap();
    s.sim.unblock("alpha_bot", s.user.id).unwrap();
    let updates = drain_updates(&s.api).await;
    let statuses: Vec<(&str, &str)> = updates
        .iter()
        .map(|u| {
            (
                u["my_chat_member"]["old_chat_member"]["status"].as_str().unwrap(),
                u["my_chat_member"]["new_chat_member"]["status"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(statuses, [("member", "kicked"), ("kicked", "member")]);
    assert!(s.api.call("sendMessage", json!({"chat_id": s.user.id, "text": "back"})).await.is_ok());
}

#[tokio::test]
async fn leaving_a_channel_shows_as_left() {
    let s = setup().await;
    s.sim.add_channel("@club", "Club", None).unwrap();
    s.sim.set_membership("@club", s.user.id, "member").unwrap();
    s.sim.set_membership("@club", s.user.id, "left").unwrap();
    assert_eq!(s.api.call("getChatMember", json!({"chat_id": "@club", "user_id": s.user.id})).await.unwrap()["status"], "left");
}

#[tokio::test]
async fn the_inbox_lists_every_event_in_the_order_it_happened() {
    let s = setup().await;
    let kb = json!({"inline_keyboard": [[{"text": "x", "callback_data": "x"}]]});
    let a = s.api.call("sendMessage", json!({"chat_id": s.user.id, "text": "a", "reply_markup": kb})).await.unwrap();
    s.api
        .call("editMessageText", json!({"chat_id": s.user.id, "message_id": a["message_id"], "text": "a2", "reply_markup": kb}))
        .await
        .unwrap();
    let q = s.sim.press_button("alpha_bot", s.user.id, a["message_id"].as_i64().unwrap(), "x").unwrap();
    s.api.call("answerCallbackQuery", json!({"callback_query_id": q})).await.unwrap();
    s.api.call("deleteMessage", json!({"chat_id": s.user.id, "message_id": a["message_id"]})).await.unwrap();
    let kinds: Vec<&str> = s
        .sim
        .inbox(s.user.id, None, 0)
        .unwrap()
        .iter()
        .map(|e| match e.event {
            InboxEvent::Message { .. } => "message",
            InboxEvent::Edited { .. } => "edited",
            InboxEvent::CallbackAnswer { .. } => "callback_answer",
            InboxEvent::Deleted { .. } => "deleted",
        })
        .collect();
    assert_eq!(kinds, ["message", "edited", "callback_answer", "deleted"]);
}

#[tokio::test]
async fn fast_edits_hit_the_flood_limit_too() {
    let s = setup().await;
    let msg = s.api.call("sendMessage", json!({"chat_id": s.user.id, "text": "0"})).await.unwrap();
    let mut limited = false;
    for i in 1..6 {
        if let Err(e) =
            s.api.call("editMessageText", json!({"chat_id": s.user.id, "message_id": msg["message_id"], "text": format!("{i}")})).await
        {
            assert_eq!(e.code, 429);
            limited = true;
        }
    }
    assert!(limited, "five edits in a burst of three");
}

#[tokio::test]
async fn copy_messages_is_all_or_nothing_under_the_flood_limit() {
    let s = setup().await;
    let bob = s.sim.user("Bob", None).unwrap();
    s.sim.send_text("alpha_bot", bob.id, "/start", None).unwrap();
    let ids: Vec<i64> =
        (0..2).map(|i| s.sim.send_text("alpha_bot", s.user.id, &format!("{i}"), None).unwrap()["message_id"].as_i64().unwrap()).collect();
    // Bob's chat has a burst of 3: after two sends one message is left, the copy needs two.
    for _ in 0..2 {
        s.api.call("sendMessage", json!({"chat_id": bob.id, "text": "hi"})).await.unwrap();
    }
    let err = s.api.call("copyMessages", json!({"chat_id": bob.id, "from_chat_id": s.user.id, "message_ids": ids})).await.unwrap_err();
    assert_eq!(err.code, 429);
    assert_eq!(s.sim.inbox(bob.id, None, 0).unwrap().len(), 2, "neither copy was delivered");
}

#[tokio::test]
async fn a_reply_to_another_chats_message_is_an_external_reply() {
    let s = setup().await;
    let bob = s.sim.user("Bob", None).unwrap();
    s.sim.send_text("alpha_bot", bob.id, "/start", None).unwrap();
    let ann_msg =
        s.sim.send_media("alpha_bot", s.user.id, botfleet_tests::fake_telegram::MediaKind::Photo, Default::default(), None).unwrap();
    let sent = s
        .api
        .call("sendMessage", json!({"chat_id": bob.id, "text": "about that photo", "reply_parameters": {"message_id": ann_msg["message_id"], "chat_id": s.user.id}}))
        .await
        .unwrap();
    assert!(sent.get("reply_to_message").is_none());
    assert_eq!(sent["external_reply"]["origin"]["sender_user"]["id"], s.user.id);
    assert!(sent["external_reply"]["photo"].is_array());
}

#[tokio::test]
async fn command_lists_of_different_chats_are_kept_apart() {
    let s = setup().await;
    let admin = json!({"type": "chat", "chat_id": s.user.id});
    s.api.call("setMyCommands", json!({"commands": [{"command": "ban", "description": "Ban"}], "scope": admin})).await.unwrap();
    s.api
        .call(
            "setMyCommands",
            json!({"commands": [{"command": "stats", "description": "Stats"}], "scope": {"type": "chat", "chat_id": 42}}),
        )
        .await
        .unwrap();
    assert_eq!(s.api.call("getMyCommands", json!({"scope": admin})).await.unwrap()[0]["command"], "ban");
    assert_eq!(s.api.call("getMyCommands", json!({})).await.unwrap(), json!([]));
}
