//! Every text the chat says, by key. The chat modules name texts only through [`TextKey`], so a
//! misspelt key does not compile, and the test below checks each key against both resource
//! files (`texts/en.yaml`, `texts/ru.yaml`).

use crate::texts::{Lang, Texts};

macro_rules! text_keys {
    ($($variant:ident = $key:literal,)*) => {
        /// A key of `texts/*.yaml`.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum TextKey {
            $($variant,)*
        }

        impl TextKey {
            pub const ALL: &'static [TextKey] = &[$(TextKey::$variant,)*];

            /// The key as written in the resource files.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(TextKey::$variant => $key,)*
                }
            }
        }
    };
}

text_keys! {
    // onboarding
    Terms = "terms",
    TermsMirror = "terms_mirror",
    BtnAgree = "btn_agree",
    Channels = "channels",
    ChannelsMissing = "channels_missing",
    BtnJoin = "btn_join",
    BtnJoined = "btn_joined",
    AskGender = "ask_gender",
    BtnMale = "btn_male",
    BtnFemale = "btn_female",
    BtnOther = "btn_other",
    AskAge = "ask_age",
    AgeInvalid = "age_invalid",
    AgeTooYoung = "age_too_young",
    ProfileDone = "profile_done",
    FinishProfile = "finish_profile",
    // menu
    MenuFind = "menu_find",
    MenuProfile = "menu_profile",
    MenuHelp = "menu_help",
    Help = "help",
    Stats = "stats",
    UnknownCommand = "unknown_command",
    ButtonStale = "button_stale",
    CommandsSlowDown = "commands_slow_down",
    // search
    Searching = "searching",
    SearchingLong = "searching_long",
    BtnCancel = "btn_cancel",
    SearchCancelled = "search_cancelled",
    NotSearching = "not_searching",
    AlreadySearching = "already_searching",
    SearchSlowDown = "search_slow_down",
    SearchTimedOut = "search_timed_out",
    Restricted = "restricted",
    Matched = "matched",
    GenderM = "gender_m",
    GenderF = "gender_f",
    GenderO = "gender_o",
    // in a chat
    ChatNext = "chat_next",
    ChatStop = "chat_stop",
    ChatReport = "chat_report",
    ChatBlock = "chat_block",
    AlreadyInChat = "already_in_chat",
    InChatOtherBot = "in_chat_other_bot",
    NotInChat = "not_in_chat",
    SlowDown = "slow_down",
    Unsupported = "unsupported",
    MediaDisabled = "media_disabled",
    TooBig = "too_big",
    RelayFailed = "relay_failed",
    MediaBusy = "media_busy",
    MediaQuota = "media_quota",
    // ending
    YouLeft = "you_left",
    PartnerLeft = "partner_left",
    PartnerGone = "partner_gone",
    BotRetiring = "bot_retiring",
    Unavailable = "unavailable",
    // what Telegram shows around the bot (telegram_menu.rs)
    CmdSearch = "cmd_search",
    CmdNext = "cmd_next",
    CmdStop = "cmd_stop",
    CmdReport = "cmd_report",
    CmdBlock = "cmd_block",
    CmdProfile = "cmd_profile",
    CmdStats = "cmd_stats",
    CmdHelp = "cmd_help",
    CmdDeleteMe = "cmd_delete_me",
    BotDescription = "bot_description",
    BotShortDescription = "bot_short_description",
    ChatIdle = "chat_idle",
    RatePrompt = "rate_prompt",
    BtnUp = "btn_up",
    BtnDown = "btn_down",
    Rated = "rated",
    // safety
    Reported = "reported",
    ReasonSpam = "reason_spam",
    ReasonAbuse = "reason_abuse",
    ReasonMinor = "reason_minor",
    ReasonOther = "reason_other",
    ReportThanks = "report_thanks",
    Blocked = "blocked",
    // profile
    Profile = "profile",
    VipUntil = "vip_until",
    VipNone = "vip_none",
    BtnEditProfile = "btn_edit_profile",
    BtnDelete = "btn_delete",
    DeleteConfirm = "delete_confirm",
    BtnDeleteYes = "btn_delete_yes",
    BtnDeleteNo = "btn_delete_no",
    Deleted = "deleted",
    DeleteKept = "delete_kept",
    // shop and payments
    MenuVip = "menu_vip",
    Shop = "shop",
    ShopVipActive = "shop_vip_active",
    ShopVipNone = "shop_vip_none",
    ShopPlan = "shop_plan",
    ShopPlanDiscount = "shop_plan_discount",
    ShopEmpty = "shop_empty",
    ShopClosed = "shop_closed",
    BtnBuy = "btn_buy",
    InvoiceVip = "invoice_vip",
    InvoiceCredits = "invoice_credits",
    InvoiceDescription = "invoice_description",
    PlanGone = "plan_gone",
    PayRefusedUnknown = "pay_refused_unknown",
    PayRefusedNotYours = "pay_refused_not_yours",
    PayRefusedExpired = "pay_refused_expired",
    PayRefusedUsed = "pay_refused_used",
    PayRefusedPlanGone = "pay_refused_plan_gone",
    PayRefusedRestricted = "pay_refused_restricted",
    PayRefusedAmount = "pay_refused_amount",
    PayRefusedTampered = "pay_refused_tampered",
    PayRefusedCapReached = "pay_refused_cap_reached",
    ShopCapReached = "shop_cap_reached",
    RefundUsage = "refund_usage",
    // admin (docs/ADMIN.md)
    Banned = "banned",
    BannedUntil = "banned_until",
    Warned = "warned",
    AdminLoginCode = "admin_login_code",
    NewsOn = "news_on",
    GiftVip = "gift_vip",
    GiftCredits = "gift_credits",
    NewsOff = "news_off",
    NewsStatus = "news_status",
    BroadcastFooter = "broadcast_footer",
    CmdNews = "cmd_news",
    RefundUnknown = "refund_unknown",
    RefundAlready = "refund_already",
    RefundRefused = "refund_refused",
    RefundDone = "refund_done",
    RefundedBuyer = "refunded_buyer",
    RefundedVipEnded = "refunded_vip_ended",
    CmdRefund = "cmd_refund",
    CmdBan = "cmd_ban",
    CmdUnban = "cmd_unban",
    CmdBroadcast = "cmd_broadcast",
    AdminStats = "admin_stats",
    AdminBanUsage = "admin_ban_usage",
    AdminUnbanUsage = "admin_unban_usage",
    AdminNotMember = "admin_not_member",
    AdminNotYourself = "admin_not_yourself",
    AdminBanned = "admin_banned",
    AdminBannedForever = "admin_banned_forever",
    AdminUnbanned = "admin_unbanned",
    AdminNotBanned = "admin_not_banned",
    AdminBroadcastUsage = "admin_broadcast_usage",
    AdminBroadcastRefused = "admin_broadcast_refused",
    AdminBroadcastConfirm = "admin_broadcast_confirm",
    BtnBroadcastSend = "btn_broadcast_send",
    BtnBroadcastCancel = "btn_broadcast_cancel",
    AdminBroadcastStarted = "admin_broadcast_started",
    AdminBroadcastCancelled = "admin_broadcast_cancelled",
    AdminBroadcastGone = "admin_broadcast_gone",
    AdminAlertRestricted = "admin_alert_restricted",
    AdminAlertQueueWait = "admin_alert_queue_wait",
    AdminAlertPayments = "admin_alert_payments",
    Paid = "paid",
    PaidVip = "paid_vip",
    PaidCredits = "paid_credits",
    PaidUnknown = "paid_unknown",
    History = "history",
    HistoryLine = "history_line",
    HistoryRefunded = "history_refunded",
    HistoryEmpty = "history_empty",
    PaySupport = "pay_support",
    PaySupportSent = "pay_support_sent",
    PaySupportUnavailable = "pay_support_unavailable",
    PaySupportAdmin = "pay_support_admin",
    SaleTerms = "sale_terms",
    CmdVip = "cmd_vip",
    CmdHistory = "cmd_history",
    CmdPaySupport = "cmd_paysupport",
    CmdTerms = "cmd_terms",
    // lock chat
    ChatLock = "chat_lock",
    CmdLock = "cmd_lock",
    LockMenu = "lock_menu",
    LockNeedCredits = "lock_need_credits",
    LockOption = "lock_option",
    LockUnavailable = "lock_unavailable",
    LockedYou = "locked_you",
    LockedPartner = "locked_partner",
    LockInsufficient = "lock_insufficient",
    LockHeldByPartner = "lock_held_by_partner",
    LockRefusesLeave = "lock_refuses_leave",
    LockReturned = "lock_returned",
    // referrals
    CmdInvite = "cmd_invite",
    Invite = "invite",
    ReferralsOff = "referrals_off",
    ReferralRewarded = "referral_rewarded",
    ReferralCommission = "referral_commission",
    ReferralCommissionReversed = "referral_commission_reversed",
    // VIP notices
    VipEndsSoon = "vip_ends_soon",
    VipEnded = "vip_ended",
    // subscriptions
    ShopPlanMonthly = "shop_plan_monthly",
    BtnSubscribe = "btn_subscribe",
    SubscribeLink = "subscribe_link",
    BtnPaySubscription = "btn_pay_subscription",
    ShopSubscription = "shop_subscription",
    ShopSubscriptionCancelled = "shop_subscription_cancelled",
    BtnCancelSubscription = "btn_cancel_subscription",
    SubscriptionCancelled = "subscription_cancelled",
    SubscriptionCancelFailed = "subscription_cancel_failed",
}

impl TextKey {
    /// The text in `lang`.
    pub fn text(self, lang: Lang) -> String {
        Texts::get().raw(lang, self.as_str())
    }

    /// The text in `lang` with its `{placeholders}` filled (see [`Texts::fmt`]).
    pub fn fmt(self, lang: Lang, args: &[(&str, &str)]) -> String {
        Texts::get().fmt(lang, self.as_str(), args)
    }

    /// How a gender reads in a profile.
    pub fn gender(g: crate::matching::Gender) -> TextKey {
        match g {
            crate::matching::Gender::Male => TextKey::GenderM,
            crate::matching::Gender::Female => TextKey::GenderF,
            crate::matching::Gender::Other => TextKey::GenderO,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_text_key_the_chat_uses_exists_in_both_languages() {
        let t = Texts::get();
        for lang in [Lang::En, Lang::Ru] {
            let keys = t.keys(lang);
            for key in TextKey::ALL {
                assert!(keys.iter().any(|k| k == key.as_str()), "{key:?} ({}) is missing in texts/{}.yaml", key.as_str(), lang.code());
            }
        }
    }

    #[test]
    fn gender_texts_follow_the_gender_codes() {
        for g in [crate::matching::Gender::Male, crate::matching::Gender::Female, crate::matching::Gender::Other] {
            assert_eq!(TextKey::gender(g).as_str(), format!("gender_{}", g.code()));
        }
    }

    /// The compile-time check holds only while the chat modules name texts through `TextKey`.
    #[test]
    fn the_chat_modules_name_texts_only_through_text_keys() {
        let sources = [
            ("mod.rs", include_str!("mod.rs")),
            ("onboarding.rs", include_str!("onboarding.rs")),
            ("menu.rs", include_str!("menu.rs")),
            ("profile.rs", include_str!("profile.rs")),
            ("search.rs", include_str!("search.rs")),
            ("relay.rs", include_str!("relay.rs")),
            ("ending.rs", include_str!("ending.rs")),
            ("safety.rs", include_str!("safety.rs")),
            ("protocol.rs", include_str!("protocol.rs")),
            ("shop.rs", include_str!("shop.rs")),
            ("payments.rs", include_str!("payments.rs")),
            ("lock.rs", include_str!("lock.rs")),
            ("referral.rs", include_str!("referral.rs")),
            ("vip.rs", include_str!("vip.rs")),
        ];
        for (name, src) in sources {
            for banned in ["texts()", "Texts::get()", ".raw("] {
                assert!(!src.contains(banned), "chat/{name} reads a text by a string key ({banned}); use TextKey");
            }
            // `t.fmt(` of the old `let t = texts();`, not the `…Key.fmt(` of a TextKey.
            let by_string = src.match_indices("t.fmt(").any(|(i, _)| i == 0 || !src.as_bytes()[i - 1].is_ascii_alphanumeric());
            assert!(!by_string, "chat/{name} formats a text by a string key (t.fmt); use TextKey");
        }
    }
}
