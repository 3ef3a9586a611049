//! The arithmetic of the GCRA limiters (generic cell rate algorithm), shared by both
//! implementations so they agree to the microsecond (reserve_send.lua and allow.lua do the
//! same steps in Lua).
//!
//! A limiter keeps a theoretical arrival time (TAT, µs): a request is allowed when
//! `now >= TAT - tolerance`, and then `TAT = max(TAT, now) + interval`. With
//! `tolerance = (burst - 1) * interval`, a fresh limiter allows `burst` requests at once and
//! then one per interval.

use std::time::Duration;

/// How long a limiter is kept after it stops mattering (ms), on top of the exact time.
pub(crate) const MARGIN_MS: i64 = 1000;

/// Emission interval and burst tolerance (µs) of `rate` per `period` with `burst` (0 taken as
/// 1). A zero interval means no rate limit.
pub(crate) fn params(rate: u32, period: Duration, burst: u32) -> (i64, i64) {
    let period_us = i64::try_from(period.as_micros()).unwrap_or(i64::MAX);
    if rate == 0 || period_us == 0 {
        return (0, 0);
    }
    let rate = i64::from(rate);
    // Rounded up: never faster than asked.
    let interval = period_us / rate + i64::from(period_us % rate != 0);
    (interval, interval.saturating_mul(i64::from(burst.max(1)) - 1))
}

/// The per-bot limit: `per_bot` per second, no burst (tolerance 0). A burst tolerance `τ` lets
/// `1 + (1 s + τ) / interval` sends into some one-second window — after an idle period a burst
/// of `per_bot` plus the steady pace on top (59 at 30/s) — while Telegram counts per second.
/// With no tolerance the sends are at least one interval apart (rounded up to the µs), so no
/// one-second window carries more than `per_bot`.
pub(crate) fn per_bot(per_bot: u32) -> (i64, i64) {
    params(per_bot, Duration::from_secs(1), 1)
}

/// The per-chat limit: `per_minute` per minute, with a burst of `burst`.
pub(crate) fn per_chat(per_minute: u32, burst: u32) -> (i64, i64) {
    params(per_minute, Duration::from_secs(60), burst)
}

/// One send limiter's bucket (see reserve_send.lua): the TAT and a hold.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct SendBucket {
    /// Theoretical arrival time, µs (0: fresh).
    pub tat_us: i64,
    /// Nothing goes before this, ms (0: none).
    pub hold_ms: i64,
}

impl SendBucket {
    /// The earliest time (µs) a send may go, and the TAT to store if it goes at `now_us`
    /// (`None` without a rate limit: only the hold applies).
    pub fn check(&self, interval: i64, tolerance: i64, now_us: i64) -> (i64, Option<i64>) {
        let hold_us = self.hold_ms.saturating_mul(1000);
        if interval == 0 {
            return (hold_us, None);
        }
        let tat = self.tat_us.max(hold_us.saturating_add(tolerance));
        (tat - tolerance, Some(tat.max(now_us).saturating_add(interval)))
    }

    /// Until when (µs) this limiter differs from a fresh one.
    pub fn relevant_until_us(&self, tolerance: i64) -> i64 {
        self.tat_us.max(self.hold_ms.saturating_mul(1000).saturating_add(tolerance))
    }
}

/// Milliseconds from a µs duration, rounded up.
pub(crate) fn ceil_ms(us: i64) -> i64 {
    us.div_euclid(1000) + i64::from(us.rem_euclid(1000) != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fresh_limiter_allows_the_burst_then_one_per_interval() {
        let (interval, tolerance) = params(30, Duration::from_secs(1), 30);
        assert_eq!(interval, 33_334);
        let mut l = SendBucket::default();
        let now = 1_000_000_000;
        let mut sent = 0;
        loop {
            let (at, tat) = l.check(interval, tolerance, now);
            if at > now {
                break;
            }
            l.tat_us = tat.unwrap();
            sent += 1;
        }
        assert_eq!(sent, 30);
        let (at, _) = l.check(interval, tolerance, now);
        assert_eq!(at - now, interval);
    }

    #[test]
    fn the_bot_limit_has_no_burst() {
        assert_eq!(per_bot(30), (33_334, 0));
    }

    #[test]
    fn no_rate_means_no_limit() {
        assert_eq!(params(0, Duration::from_secs(1), 5), (0, 0));
        assert_eq!(per_chat(20, 0), (3_000_000, 0));
        assert_eq!(ceil_ms(1), 1);
        assert_eq!(ceil_ms(1000), 1);
        assert_eq!(ceil_ms(-5), 0);
    }
}
