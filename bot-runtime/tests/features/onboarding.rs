//! Onboarding: terms → required channels → gender → age → ready.

use bot_runtime::chat::text_key::TextKey;
use bot_runtime::store::Stage;
use bot_runtime::texts::Lang;

use crate::seam::{Seam, buttons, keyboard, links};
use crate::support::{Mode, bot_config};

#[tokio::test]
async fn start_shows_the_terms_with_the_minimum_age_and_an_agree_button() {
    let s = Seam::bots(&["alpha"]).await;
    let ann = s.person("alpha", "Ann", Lang::En);
    let out = s.send(&ann, "/start").await;
    let terms = out.said(&ann, TextKey::Terms);
    assert!(crate::seam::text(terms).contains("18 or older"), "{}", out.listing());
    assert_eq!(buttons(terms), ["terms:ok"]);
}

#[tokio::test]
async fn terms_gender_and_age_complete_the_profile_with_the_menu() {
    let s = Seam::bots(&["alpha"]).await;
    let ann = s.person("alpha", "Ann", Lang::En);
    s.send(&ann, "/start").await;
    let out = s.press(&ann, "terms:ok").await;
    assert_eq!(buttons(out.said(&ann, TextKey::AskGender)), ["g:m", "g:f", "g:o"]);
    s.press(&ann, "g:f").await.said(&ann, TextKey::AskAge);
    let out = s.send(&ann, " 25 ").await;
    let done = out.said(&ann, TextKey::ProfileDone);
    assert!(keyboard(done).contains(&TextKey::MenuFind.text(Lang::En).as_str()), "{}", out.listing());
    let profile = s.profile(&ann).await.expect("a profile");
    assert_eq!((profile.stage, profile.age), (Stage::Ready, Some(25)));
}

#[tokio::test]
async fn an_age_that_is_not_a_number_from_the_minimum_to_99_is_asked_again() {
    let s = Seam::bots(&["alpha"]).await;
    let ann = s.person("alpha", "Ann", Lang::En);
    s.send(&ann, "/start").await;
    s.press(&ann, "terms:ok").await;
    s.press(&ann, "g:f").await;
    for bad in ["twenty", "130", "-5", "2 5"] {
        let out = s.send(&ann, bad).await;
        assert!(out.says(&ann, TextKey::AgeInvalid), "{bad}: {}", out.listing());
    }
    assert_eq!(s.profile(&ann).await.map(|u| u.stage), Some(Stage::Age));
}

#[tokio::test]
async fn someone_under_the_minimum_age_is_refused_and_stays_at_the_age_step() {
    let s = Seam::bots(&["alpha"]).await;
    let kid = s.person("alpha", "Kid", Lang::En);
    s.send(&kid, "/start").await;
    s.press(&kid, "terms:ok").await;
    s.press(&kid, "g:m").await;
    let out = s.send(&kid, "15").await;
    assert!(crate::seam::text(out.said(&kid, TextKey::AgeTooYoung)).contains("18"), "{}", out.listing());
    let out = s.send(&kid, "/search").await;
    out.said(&kid, TextKey::FinishProfile);
    assert!(!s.waiting(&kid).await);
}

#[tokio::test]
async fn a_required_channel_not_joined_gets_join_buttons_until_joined() {
    let s = Seam::with(vec![bot_config("alpha", Mode::Polling, "  requiredChannels: [\"@news\"]\n")]).await;
    let ann = s.person("alpha", "Ann", Lang::En);
    s.send(&ann, "/start").await;
    let out = s.press(&ann, "terms:ok").await;
    let prompt = out.said(&ann, TextKey::Channels);
    assert!(crate::seam::text(prompt).contains("@news"), "{}", out.listing());
    assert_eq!(links(prompt), ["https://t.me/news"]);
    assert_eq!(buttons(prompt), ["chan:check"]);

    s.press(&ann, "chan:check").await.said(&ann, TextKey::ChannelsMissing);
    s.sim.set_membership("news", ann.id, "member").expect("join the channel");
    s.press(&ann, "chan:check").await.said(&ann, TextKey::AskGender);
}

#[tokio::test]
async fn a_russian_app_gets_the_terms_in_russian() {
    let s = Seam::bots(&["alpha"]).await;
    let ivan = s.person("alpha", "Ivan", Lang::Ru);
    let out = s.send(&ivan, "/start").await;
    out.said(&ivan, TextKey::Terms);
    assert_ne!(TextKey::Terms.text(Lang::Ru), TextKey::Terms.text(Lang::En));
}

/// Issue #9, defect 4: a terms tap whose channel check fails for a moment (Telegram 5xx) is
/// retried; the retry must continue the onboarding, never answer "this button is no longer
/// active" (the first attempt had already saved the next step).
#[tokio::test]
async fn a_terms_tap_retried_after_a_failed_channel_check_continues() {
    let s = Seam::with(vec![bot_config("alpha", Mode::Polling, "  requiredChannels: [\"@news\"]\n")]).await;
    let ann = s.person("alpha", "Ann", Lang::En);
    s.send(&ann, "/start").await.said(&ann, TextKey::Terms);
    s.sim
        .add_fault(botfleet_tests::fake_telegram::FaultSpec {
            method: Some("getChatMember".into()),
            bot: None,
            kind: botfleet_tests::fake_telegram::FaultKind::ServerError { code: 502 },
            count: Some(1),
        })
        .expect("a fault");
    let tap = serde_json::json!({
        "update_id": 700_001,
        "callback_query": {
            "id": "terms-retry", "chat_instance": "1", "data": "terms:ok",
            "from": {"id": ann.id, "is_bot": false, "first_name": "Ann", "language_code": "en"},
        }
    });
    assert!(s.try_update("alpha", tap.clone()).await.is_err(), "the first attempt meets the outage");
    let out = s.try_update("alpha", tap).await.expect("the retry");
    assert!(!out.says(&ann, TextKey::ButtonStale), "{}", out.listing());
    out.said(&ann, TextKey::Channels);
}

/// Issue #9, defect 5: a required channel the bot cannot check (not an admin there) is
/// skipped, and never leaves the user an empty "please join" prompt.
#[tokio::test]
async fn a_channel_the_bot_cannot_check_never_shows_an_empty_join_prompt() {
    let s = Seam::with(vec![bot_config("alpha", Mode::Polling, "  requiredChannels: [\"@news\"]\n")]).await;
    s.make_channel_unreadable("@news");
    let ann = s.person("alpha", "Ann", Lang::En);
    s.send(&ann, "/start").await;
    let out = s.press(&ann, "terms:ok").await;
    assert!(!out.says(&ann, TextKey::Channels), "an empty join prompt: {}", out.listing());
    out.said(&ann, TextKey::AskGender);
}
