//! Onboarding, one step at a time (terms → required channels → gender → age → ready). The step
//! lives in `users.stage`, so any replica continues where another left off.

use serde_json::{Value, json};

use super::protocol::Callback;
use super::text_key::TextKey;
use super::{buttons, min_age};
use crate::bot::{Effects, HandleError, menu_keyboard, remove_keyboard};
use crate::matching::{Gender, Member};
use crate::store::{Funnel, Stage, User};
use crate::texts::{Lang, escape};

/// Shows the step the user is at.
pub(super) async fn prompt_stage(fx: &mut Effects<'_>, user: &User, lang: Lang) -> Result<(), HandleError> {
    let me = user.member();
    let cfg = fx.bot.cfg();
    let age = min_age(fx.bot);
    match user.stage {
        Stage::Terms => {
            let mirror = if cfg.bot.moderation.media_mirror_chat_id.is_some() { TextKey::TermsMirror.text(lang) } else { String::new() };
            let text = TextKey::Terms.fmt(lang, &[("min_age", &age), ("mirror", &mirror)]);
            let agree = buttons(vec![vec![(TextKey::BtnAgree.fmt(lang, &[("min_age", &age)]), Callback::AcceptTerms)]]);
            fx.say(&me, text, Some(agree));
        }
        Stage::Channels => {
            let missing = missing_channels(fx, user.user_id).await?;
            if missing.is_empty() {
                // Joined meanwhile, or every channel is one the bot cannot check (skipped):
                // never an empty "please join".
                let mut user = user.clone();
                user.stage = Stage::Gender;
                user.updated_ms = fx.now_ms;
                fx.store().save_profile(&user).await?;
                ask_gender(fx, &me, lang);
            } else {
                channels_prompt(fx, &me, lang, &missing, TextKey::Channels);
            }
        }
        Stage::Gender => ask_gender(fx, &me, lang),
        Stage::Age => fx.say(&me, TextKey::AskAge.text(lang), Some(remove_keyboard())),
        Stage::Ready => fx.say(&me, TextKey::ProfileDone.text(lang), Some(menu_keyboard(lang))),
    }
    Ok(())
}

/// `terms:ok` (at the terms step; at the channels step it is a retry of a tap whose first
/// attempt saved the step and then failed, or a second tap: the channels step is shown).
pub(super) async fn accept_terms(fx: &mut Effects<'_>, user: User, lang: Lang) -> Result<Option<String>, HandleError> {
    if user.stage == Stage::Channels {
        prompt_stage(fx, &user, lang).await?;
        return Ok(None);
    }
    let next = if fx.bot.cfg().bot.required_channels.is_empty() { Stage::Gender } else { Stage::Channels };
    advance(fx, user, lang, next).await?;
    Ok(None)
}

/// `chan:check` (at the channels step).
pub(super) async fn check_channels(fx: &mut Effects<'_>, user: User, lang: Lang) -> Result<Option<String>, HandleError> {
    let missing = missing_channels(fx, user.user_id).await?;
    if missing.is_empty() {
        advance(fx, user, lang, Stage::Gender).await?;
    } else {
        channels_prompt(fx, &user.member(), lang, &missing, TextKey::ChannelsMissing);
    }
    Ok(None)
}

/// `g:<code>` (at the gender step).
pub(super) async fn set_gender(fx: &mut Effects<'_>, mut user: User, lang: Lang, gender: Gender) -> Result<Option<String>, HandleError> {
    user.gender = Some(gender);
    advance(fx, user, lang, Stage::Age).await?;
    Ok(None)
}

fn ask_gender(fx: &mut Effects<'_>, me: &Member, lang: Lang) {
    let choices = buttons(vec![vec![
        (TextKey::BtnMale.text(lang), Callback::Gender(Gender::Male)),
        (TextKey::BtnFemale.text(lang), Callback::Gender(Gender::Female)),
        (TextKey::BtnOther.text(lang), Callback::Gender(Gender::Other)),
    ]]);
    fx.say(me, TextKey::AskGender.text(lang), Some(choices));
}

fn channels_prompt(fx: &mut Effects<'_>, me: &Member, lang: Lang, missing: &[String], key: TextKey) {
    let names = missing.iter().map(|c| escape(&channel_handle(c))).collect::<Vec<_>>().join(", ");
    let mut rows: Vec<Vec<Value>> = missing
        .iter()
        .map(|c| {
            let handle = channel_handle(c);
            let url = format!("https://t.me/{}", handle.trim_start_matches('@'));
            vec![json!({"text": TextKey::BtnJoin.fmt(lang, &[("channel", &handle)]), "url": url})]
        })
        .collect();
    rows.push(vec![json!({"text": TextKey::BtnJoined.text(lang), "callback_data": Callback::CheckChannels.render()})]);
    fx.say(me, key.fmt(lang, &[("channels", &names)]), Some(json!({ "inline_keyboard": rows })));
}

fn channel_handle(c: &str) -> String {
    if c.starts_with('@') { c.to_string() } else { format!("@{c}") }
}

/// The required channels the user has not joined. A channel the bot can't read (not an
/// admin there, or it doesn't exist) is skipped with a warning instead of locking every
/// user out: a configuration mistake must not take the bot down.
async fn missing_channels(fx: &Effects<'_>, user_id: i64) -> Result<Vec<String>, HandleError> {
    let mut missing = Vec::new();
    for channel in fx.bot.cfg().bot.required_channels.iter() {
        let handle = channel_handle(channel);
        match fx.bot.api.call("getChatMember", &json!({"chat_id": handle, "user_id": user_id})).await {
            Ok(member) => {
                let status = member["status"].as_str().unwrap_or("left");
                let joined = matches!(status, "creator" | "administrator" | "member")
                    || (status == "restricted" && member["is_member"].as_bool().unwrap_or(false));
                if !joined {
                    missing.push(channel.clone());
                }
            }
            Err(e) if e.is_transient() => return Err(e.into()),
            Err(e) => tracing::warn!(bot = %fx.bot.name, channel = %handle, error = %e, "cannot check a required channel; skipping it"),
        }
    }
    Ok(missing)
}

/// Saves the user at `stage` and shows it.
pub(super) async fn advance(fx: &mut Effects<'_>, mut user: User, lang: Lang, stage: Stage) -> Result<(), HandleError> {
    user.stage = stage;
    user.updated_ms = fx.now_ms;
    fx.store().save_profile(&user).await?;
    if stage == Stage::Ready {
        fx.store().record_event(&fx.bot.name, user.user_id, Funnel::ProfileDone, "", fx.now_ms).await?;
        fx.say(&user.member(), TextKey::ProfileDone.text(lang), Some(menu_keyboard(lang)));
        return super::referral::on_profile_done(fx, &user).await;
    }
    prompt_stage(fx, &user, lang).await
}

/// The age step: a number from the minimum age to 99.
pub(super) async fn on_age(fx: &mut Effects<'_>, user: User, lang: Lang, text: Option<&str>) -> Result<(), HandleError> {
    let me = user.member();
    let min = fx.bot.cfg().bot.moderation.minimum_age;
    let age = text
        .map(str::trim)
        .filter(|s| !s.is_empty() && s.len() <= 3 && s.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|s| s.parse::<u8>().ok());
    match age {
        Some(a) if a < min => {
            fx.say(&me, TextKey::AgeTooYoung.fmt(lang, &[("min_age", &min.to_string())]), None);
            Ok(())
        }
        Some(a) if a <= 99 => {
            let mut user = user;
            user.age = Some(a);
            advance(fx, user, lang, Stage::Ready).await
        }
        _ => {
            fx.say(&me, TextKey::AgeInvalid.fmt(lang, &[("min_age", &min.to_string())]), None);
            Ok(())
        }
    }
}
