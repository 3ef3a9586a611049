//! The operator's Telegram client against the fake Telegram.

use botfleet_crds::token::BotToken;
use botfleet_operator::telegram::{TelegramClient, TelegramError, WebhookRegistration};
use botfleet_tests::fake_telegram::{FakeTelegram, FaultKind, FaultSpec};

fn registration() -> WebhookRegistration {
    WebhookRegistration {
        url: "http://127.0.0.1:9/telegram/alpha".into(),
        secret_token: "op-generated_SECRET-123".into(),
        allowed_updates: vec!["message".into(), "callback_query".into(), "pre_checkout_query".into(), "my_chat_member".into()],
        max_connections: 40,
    }
}

#[tokio::test]
async fn get_me_validates_a_token_and_names_the_bot() {
    let fake = FakeTelegram::start().await.unwrap();
    let bot = fake.sim().register_bot("alpha_bot").unwrap();
    let client = TelegramClient::new(&fake.api_url());
    let me = client.get_me(&BotToken::parse(&bot.token).unwrap()).await.unwrap();
    assert_eq!((me.id, me.username.as_str()), (bot.id, "alpha_bot"));
}

#[tokio::test]
async fn a_revoked_token_is_unauthorized() {
    let fake = FakeTelegram::start().await.unwrap();
    let client = TelegramClient::new(&fake.api_url());
    let token = BotToken::parse("42:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA").unwrap();
    assert_eq!(client.get_me(&token).await.unwrap_err(), TelegramError::Unauthorized);
}

#[tokio::test]
async fn webhook_is_registered_read_back_and_deleted() {
    let fake = FakeTelegram::start().await.unwrap();
    let bot = fake.sim().register_bot("alpha_bot").unwrap();
    let token = BotToken::parse(&bot.token).unwrap();
    let client = TelegramClient::new(&fake.api_url());
    client.set_webhook(&token, &registration()).await.unwrap();
    let info = client.get_webhook_info(&token).await.unwrap();
    assert_eq!(info.url, "http://127.0.0.1:9/telegram/alpha");
    assert_eq!(info.max_connections, Some(40));
    assert_eq!(info.allowed_updates.unwrap().len(), 4);
    client.delete_webhook(&token, false).await.unwrap();
    assert_eq!(client.get_webhook_info(&token).await.unwrap().url, "");
}

#[tokio::test]
async fn telegram_outages_are_transient_errors() {
    let fake = FakeTelegram::start().await.unwrap();
    let bot = fake.sim().register_bot("alpha_bot").unwrap();
    fake.sim().add_fault(FaultSpec { method: None, bot: None, kind: FaultKind::Outage, count: Some(1) }).unwrap();
    let client = TelegramClient::new(&fake.api_url());
    let err = client.get_me(&BotToken::parse(&bot.token).unwrap()).await.unwrap_err();
    assert!(matches!(&err, TelegramError::Api { code: 502, .. }), "{err:?}");
    assert!(err.is_transient());
}

#[tokio::test]
async fn transport_errors_never_contain_the_token() {
    let token = BotToken::parse("123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw").unwrap();
    // Nothing listens on the discard port.
    let client = TelegramClient::new("http://127.0.0.1:9");
    let err = client.get_me(&token).await.unwrap_err();
    assert!(matches!(err, TelegramError::Transport(_)), "{err:?}");
    let text = format!("{err} {err:?}");
    assert!(!text.contains("AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"), "{text}");
}
