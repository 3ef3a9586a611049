//! teloxide (what our runtime uses) as the client: its PascalCase method names, JSON and
//! multipart bodies, and its parsing of every result must all work against the fake.

use botfleet_tests::fake_telegram::{InvoiceRef, Limits, MediaKind, MediaSpec, PayOutcome};
use teloxide::RequestError;
use teloxide::payloads::setters::*;
use teloxide::prelude::*;
use teloxide::types::{InlineKeyboardButton, InlineKeyboardMarkup, InputFile, LabeledPrice, MessageId, ParseMode, UpdateKind};

use crate::setup;

fn teloxide_bot(s: &crate::Setup) -> Bot {
    Bot::new(&s.bot.token).set_api_url(reqwest::Url::parse(&s.fake.api_url()).unwrap())
}

#[tokio::test]
async fn teloxide_reads_identity_sends_and_edits() {
    let s = setup().await;
    s.sim.set_limits(Limits { enabled: false, ..Limits::default() }).unwrap();
    let bot = teloxide_bot(&s);
    let me = bot.get_me().await.unwrap();
    assert_eq!(me.username(), "alpha_bot");
    let chat = ChatId(s.user.id);
    let kb = InlineKeyboardMarkup::new(vec![vec![InlineKeyboardButton::callback("Cancel", "cancel")]]);
    let msg = bot.send_message(chat, "<b>Searching</b>…").parse_mode(ParseMode::Html).reply_markup(kb.clone()).await.unwrap();
    assert_eq!(msg.text(), Some("Searching…"));
    let edited = bot.edit_message_text(chat, msg.id, "Still searching…").reply_markup(kb).await.unwrap();
    assert_eq!(edited.text(), Some("Still searching…"));
    bot.delete_message(chat, edited.id).await.unwrap();
    let err = bot.delete_message(chat, edited.id).await.unwrap_err();
    assert!(matches!(err, RequestError::Api(_)), "{err:?}");
}

#[tokio::test]
async fn teloxide_polls_updates_and_answers_callbacks() {
    let s = setup().await;
    let bot = teloxide_bot(&s);
    let chat = ChatId(s.user.id);
    let kb = InlineKeyboardMarkup::new(vec![vec![InlineKeyboardButton::callback("Next", "next")]]);
    let msg = bot.send_message(chat, "Partner found").reply_markup(kb).await.unwrap();
    s.sim.press_button("alpha_bot", s.user.id, msg.id.0 as i64, "next").unwrap();
    let updates = bot.get_updates().timeout(1).await.unwrap();
    assert_eq!(updates.len(), 2);
    let UpdateKind::Message(start) = &updates[0].kind else { panic!("{:?}", updates[0].kind) };
    assert_eq!(start.text(), Some("/start"));
    let UpdateKind::CallbackQuery(q) = &updates[1].kind else { panic!("{:?}", updates[1].kind) };
    assert_eq!(q.data.as_deref(), Some("next"));
    bot.answer_callback_query(q.id.clone()).text("OK").await.unwrap();
    let next = bot.get_updates().offset(updates[1].id.0 as i32 + 1).timeout(0).await.unwrap();
    assert!(next.is_empty());
}

#[tokio::test]
async fn teloxide_uploads_copies_and_downloads_media() {
    let s = setup().await;
    s.sim.set_limits(Limits { enabled: false, ..Limits::default() }).unwrap();
    let bot = teloxide_bot(&s);
    let chat = ChatId(s.user.id);
    let sent = bot.send_photo(chat, InputFile::memory(vec![1u8; 4096]).file_name("cat.jpg")).caption("cat").await.unwrap();
    let photo = sent.photo().unwrap().last().unwrap().clone();
    let file = bot.get_file(photo.file.id.clone()).await.unwrap();
    assert_eq!(file.size, 4096);
    let voice = s.sim.send_media("alpha_bot", s.user.id, MediaKind::Voice, MediaSpec::default(), None).unwrap();
    let copied = bot.copy_message(chat, chat, MessageId(voice["message_id"].as_i64().unwrap() as i32)).await.unwrap();
    assert!(copied.0 > 0);
    bot.send_voice(chat, InputFile::file_id(voice["voice"]["file_id"].as_str().unwrap().to_string().into())).await.unwrap();
}

#[tokio::test]
async fn teloxide_sells_for_stars() {
    let s = setup().await;
    let bot = teloxide_bot(&s);
    let chat = ChatId(s.user.id);
    bot.get_updates().await.unwrap();
    let invoice = bot.send_invoice(chat, "VIP", "A week of VIP", "quote:7", "XTR", vec![LabeledPrice::new("VIP", 100)]).await.unwrap();
    let sim = s.sim.clone();
    let pay = tokio::spawn(async move { sim.pay("alpha_bot", s.user.id, InvoiceRef::Message { message_id: invoice.id.0 as i64 }).await });
    let mut offset = 0;
    let query = loop {
        let updates = bot.get_updates().offset(offset).timeout(5).await.unwrap();
        if let Some(last) = updates.last() {
            offset = last.id.0 as i32 + 1;
        }
        if let Some(q) = updates.iter().find_map(|u| if let UpdateKind::PreCheckoutQuery(q) = &u.kind { Some(q.clone()) } else { None }) {
            break q;
        }
    };
    assert_eq!(query.total_amount, 100);
    bot.answer_pre_checkout_query(query.id, true).await.unwrap();
    let PayOutcome::Paid { telegram_payment_charge_id, .. } = pay.await.unwrap().unwrap() else { panic!() };
    let updates = bot.get_updates().offset(offset).timeout(5).await.unwrap();
    let UpdateKind::Message(m) = &updates[0].kind else { panic!() };
    let paid = m.successful_payment().unwrap();
    assert_eq!(paid.telegram_payment_charge_id.0, telegram_payment_charge_id);
    bot.refund_star_payment(UserId(s.user.id as u64), paid.telegram_payment_charge_id.clone()).await.unwrap();
    let balance = bot.get_my_star_balance().await.unwrap();
    assert_eq!(balance.amount, 0);
}

#[tokio::test]
async fn teloxide_sees_429_as_retry_after() {
    let s = setup().await;
    let bot = teloxide_bot(&s);
    let chat = ChatId(s.user.id);
    let mut retry = None;
    for _ in 0..5 {
        if let Err(RequestError::RetryAfter(secs)) = bot.send_message(chat, "flood").await {
            retry = Some(secs);
        }
    }
    assert_eq!(retry.map(|s| s.seconds()), Some(1));
}

#[tokio::test]
async fn teloxide_sets_and_reads_its_webhook() {
    let s = setup().await;
    let bot = teloxide_bot(&s);
    bot.set_webhook(reqwest::Url::parse("http://127.0.0.1:9/hook").unwrap())
        .secret_token("abc_DEF-123".to_string())
        .max_connections(5)
        .await
        .unwrap();
    let info = bot.get_webhook_info().await.unwrap();
    assert_eq!(info.url.map(|u| u.to_string()).as_deref(), Some("http://127.0.0.1:9/hook"));
    assert_eq!(info.max_connections, Some(5));
    bot.delete_webhook().drop_pending_updates(true).await.unwrap();
    assert!(bot.get_webhook_info().await.unwrap().url.is_none());
}
