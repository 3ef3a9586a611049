//! The menu: /start, /help, unknown commands, and reply-keyboard taps in either language.

use bot_runtime::chat::text_key::TextKey;
use bot_runtime::texts::Lang;

use crate::seam::{Seam, keyboard};

#[tokio::test]
async fn an_unknown_command_points_to_help() {
    let s = Seam::bots(&["alpha"]).await;
    let ann = s.onboarded("alpha", "Ann", "f", 25).await;
    let out = s.send(&ann, "/shop").await;
    out.said(&ann, TextKey::UnknownCommand);
    assert_eq!(out.jobs.len(), 1, "{}", out.listing());
}

#[tokio::test]
async fn help_explains_and_keeps_the_menu_once_ready() {
    let s = Seam::bots(&["alpha"]).await;
    let ann = s.onboarded("alpha", "Ann", "f", 25).await;
    let out = s.send(&ann, "/help").await;
    let help = out.said(&ann, TextKey::Help);
    assert!(keyboard(help).contains(&TextKey::MenuFind.text(Lang::En).as_str()), "{}", out.listing());

    // Before the profile is done there is no menu to keep.
    let bob = s.person("alpha", "Bob", Lang::En);
    let out = s.send(&bob, "/help").await;
    assert!(keyboard(out.said(&bob, TextKey::Help)).is_empty(), "{}", out.listing());
}

#[tokio::test]
async fn start_in_a_chat_keeps_the_chat_keyboard() {
    let s = Seam::bots(&["alpha"]).await;
    let (ann, _bob) = s.chatting("alpha", "alpha").await;
    let out = s.send(&ann, "/start").await;
    let said = out.said(&ann, TextKey::AlreadyInChat);
    assert!(keyboard(said).contains(&TextKey::ChatStop.text(Lang::En).as_str()), "{}", out.listing());
}

#[tokio::test]
async fn reply_keyboard_taps_work_in_the_users_language() {
    let s = Seam::bots(&["alpha"]).await;
    let ivan = s.person("alpha", "Ivan", Lang::Ru);
    s.onboard(&ivan, "m", 30).await;
    let out = s.tap(&ivan, TextKey::MenuProfile).await;
    out.said(&ivan, TextKey::Profile);
    let out = s.tap(&ivan, TextKey::MenuFind).await;
    out.said(&ivan, TextKey::Searching);
}

#[tokio::test]
async fn a_tap_on_a_keyboard_drawn_in_the_other_language_still_works() {
    let s = Seam::bots(&["alpha"]).await;
    let ann = s.onboarded("alpha", "Ann", "f", 25).await;
    // Ann's app switched language after the keyboard was drawn in Russian.
    let out = s.send(&ann, &TextKey::MenuHelp.text(Lang::Ru)).await;
    out.said(&ann, TextKey::Help);
}
