//! [`Quotes`], [`Payments`] and [`Ledger`] on [`SqlStore`]: the same SQL on Postgres and
//! SQLite (the rules of `sql.rs` hold here too).
//!
//! Exactly once and never negative, on both databases:
//!
//! * A payment is one transaction that starts by inserting its row keyed by the charge id. On
//!   Postgres a second transaction inserting the same key waits for the first to finish, then
//!   finds the row (`ON CONFLICT DO NOTHING` inserts nothing) and rolls back; SQLite runs one
//!   writer at a time (the first statement of each transaction is a write, so a second writer
//!   waits for the busy timeout instead of failing).
//! * A ledger entry first touches the member's wallet row with an UPDATE: on Postgres that
//!   row lock is held to the commit, so two debits of one member take turns and the second
//!   sees the first's balance; the balance check, the idempotency check and the writes all
//!   happen under it. The wallet's `CHECK (balance >= 0)` is the last line of defence.

use sqlx::{AnyConnection, Row as _};

use super::StoreResult;
use super::money::{
    Applied, CAP_HOLD_MS, CampaignCap, Ledger, LedgerEntry, LedgerOutcome, NewPayment, NewQuote, Payment, Payments, Quote, QuoteRefusal,
    Quotes, RefundOutcome, Subscription, Subscriptions, VIP_ENDED_NOTICE_WINDOW_MS, VIP_REMINDER_MS, VipNotice,
};
use super::sql::{SqlStore, col, corrupt, db_err};

macro_rules! quote_columns {
    () => {
        "id, bot, user_id, plan_id, price_stars, base_stars, campaign_id, vip_days, lock_credits, created_ms, expires_ms, \
         checkout_id, used_ms, campaign_key, campaign_cap"
    };
}

macro_rules! payment_columns {
    () => {
        "telegram_payment_charge_id, bot, user_id, quote_id, plan_id, stars, vip_days, lock_credits, vip_until_ms, \
         created_ms, refunded_ms, refund_spent_credits"
    };
}

fn quote_from_row(row: &sqlx::any::AnyRow) -> StoreResult<Quote> {
    Ok(Quote {
        id: col(row, "id")?,
        bot: col(row, "bot")?,
        user_id: col(row, "user_id")?,
        plan_id: col(row, "plan_id")?,
        price_stars: col(row, "price_stars")?,
        base_stars: col(row, "base_stars")?,
        campaign_id: col(row, "campaign_id")?,
        vip_days: col(row, "vip_days")?,
        lock_credits: col(row, "lock_credits")?,
        created_ms: col(row, "created_ms")?,
        expires_ms: col(row, "expires_ms")?,
        checkout_id: col(row, "checkout_id")?,
        used_ms: col(row, "used_ms")?,
        campaign_cap: match (col::<Option<String>>(row, "campaign_key")?, col::<Option<i64>>(row, "campaign_cap")?) {
            (Some(key), Some(max)) => Some(CampaignCap { key, max }),
            _ => None,
        },
    })
}

fn payment_from_row(row: &sqlx::any::AnyRow) -> StoreResult<Payment> {
    Ok(Payment {
        charge_id: col(row, "telegram_payment_charge_id")?,
        bot: col(row, "bot")?,
        user_id: col(row, "user_id")?,
        quote_id: col(row, "quote_id")?,
        plan_id: col(row, "plan_id")?,
        stars: col(row, "stars")?,
        vip_days: col(row, "vip_days")?,
        lock_credits: col(row, "lock_credits")?,
        vip_until_ms: col(row, "vip_until_ms")?,
        created_ms: col(row, "created_ms")?,
        refunded_ms: col(row, "refunded_ms")?,
        refund_spent_credits: col(row, "refund_spent_credits")?,
    })
}

impl super::sql::SqlStore {
    /// Payments of every bot made in `[from_ms, to_ms)`, oldest first, at most `limit` (the
    /// admin role's CSV export).
    pub(crate) async fn payments_between(&self, from_ms: i64, to_ms: i64, limit: i64) -> StoreResult<Vec<Payment>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            payment_columns!(),
            " FROM payments WHERE created_ms >= $1 AND created_ms < $2 ORDER BY created_ms, telegram_payment_charge_id LIMIT $3"
        ))
        .bind(from_ms)
        .bind(to_ms)
        .bind(limit)
        .fetch_all(self.pool())
        .await
        .map_err(db_err)?;
        rows.iter().map(payment_from_row).collect()
    }
}

/// A new quote id: 96 random bits in hex (unguessable; the invoice payload carries it).
fn new_quote_id() -> String {
    format!("{:024x}", rand::random::<u128>() >> 32)
}

const DAY_MS: i64 = 86_400_000;

/// One ledger entry inside the caller's transaction (see the module comment for the locking).
/// The caller commits only [`LedgerOutcome::Written`]; anything else is rolled back.
pub(super) async fn append_in(conn: &mut AnyConnection, e: &LedgerEntry) -> StoreResult<LedgerOutcome> {
    if e.delta == 0 {
        return Err(corrupt(format_args!("ledger entry {} with a zero delta", e.idem_key)));
    }
    sqlx::query("INSERT INTO wallets (bot, user_id, balance, updated_ms) VALUES ($1, $2, 0, $3) ON CONFLICT (bot, user_id) DO NOTHING")
        .bind(e.bot.as_str())
        .bind(e.user_id)
        .bind(e.created_ms)
        .execute(&mut *conn)
        .await
        .map_err(db_err)?;
    // The lock: held until the transaction ends.
    let row = sqlx::query("UPDATE wallets SET updated_ms = updated_ms WHERE bot = $1 AND user_id = $2 RETURNING balance")
        .bind(e.bot.as_str())
        .bind(e.user_id)
        .fetch_one(&mut *conn)
        .await
        .map_err(db_err)?;
    let balance: i64 = col(&row, "balance")?;
    let seen = sqlx::query("SELECT 1 AS seen FROM ledger WHERE idem_key = $1")
        .bind(e.idem_key.as_str())
        .fetch_optional(&mut *conn)
        .await
        .map_err(db_err)?;
    if seen.is_some() {
        return Ok(LedgerOutcome::Duplicate { balance });
    }
    let after = balance.checked_add(e.delta).ok_or_else(|| corrupt(format_args!("ledger balance overflow for {}", e.idem_key)))?;
    if after < 0 {
        return Ok(LedgerOutcome::Insufficient { balance });
    }
    sqlx::query("INSERT INTO ledger (idem_key, bot, user_id, delta, reason, ref, created_ms) VALUES ($1, $2, $3, $4, $5, $6, $7)")
        .bind(e.idem_key.as_str())
        .bind(e.bot.as_str())
        .bind(e.user_id)
        .bind(e.delta)
        .bind(e.reason.as_str())
        .bind(e.reference.as_str())
        .bind(e.created_ms)
        .execute(&mut *conn)
        .await
        .map_err(db_err)?;
    sqlx::query("UPDATE wallets SET balance = $3, updated_ms = $4 WHERE bot = $1 AND user_id = $2")
        .bind(e.bot.as_str())
        .bind(e.user_id)
        .bind(after)
        .bind(e.created_ms)
        .execute(&mut *conn)
        .await
        .map_err(db_err)?;
    Ok(LedgerOutcome::Written { balance: after })
}

/// Adds `$4` ms of VIP to member (`$1`, `$2`) at `$3`: onto an unexpired VIP, otherwise from
/// now. Returns the new deadline (no row: no such member). Purchases and referral rewards stack
/// the same way.
const STACK_VIP: &str = "UPDATE users SET vip_until_ms = \
       CASE WHEN vip_until_ms IS NOT NULL AND vip_until_ms > $3 THEN vip_until_ms ELSE $3 END + $4, updated_ms = $3 \
     WHERE bot = $1 AND user_id = $2 RETURNING vip_until_ms";

/// [`STACK_VIP`] inside the caller's transaction: the member's new VIP deadline (None: no such
/// member).
pub(super) async fn stack_vip_in(conn: &mut AnyConnection, bot: &str, user_id: i64, now_ms: i64, days: i64) -> StoreResult<Option<i64>> {
    let row =
        sqlx::query(STACK_VIP).bind(bot).bind(user_id).bind(now_ms).bind(days * DAY_MS).fetch_optional(&mut *conn).await.map_err(db_err)?;
    row.as_ref().map(|r| col(r, "vip_until_ms")).transpose()
}

/// Releases the expired, unpaid holds of one campaign (or of every campaign), inside the
/// caller's transaction, giving their slots back to the counters. Each hold is released once:
/// the UPDATE's `released_ms IS NULL` is re-checked under the row lock by a concurrent
/// release (Postgres) or runs alone (SQLite). Returns the campaign of each released slot.
async fn release_expired_in(conn: &mut AnyConnection, campaign: Option<&str>, now_ms: i64) -> StoreResult<Vec<String>> {
    const ALL: &str = "UPDATE campaign_redemptions SET released_ms = $1 \
         WHERE released_ms IS NULL AND paid_ms IS NULL AND expires_ms <= $1 RETURNING campaign";
    const ONE: &str = "UPDATE campaign_redemptions SET released_ms = $1 \
         WHERE released_ms IS NULL AND paid_ms IS NULL AND expires_ms <= $1 AND campaign = $2 RETURNING campaign";
    let rows = match campaign {
        Some(c) => sqlx::query(ONE).bind(now_ms).bind(c).fetch_all(&mut *conn).await,
        None => sqlx::query(ALL).bind(now_ms).fetch_all(&mut *conn).await,
    }
    .map_err(db_err)?;
    let released: Vec<String> = rows.iter().map(|r| col::<String>(r, "campaign")).collect::<StoreResult<_>>()?;
    let mut counts: std::collections::BTreeMap<&str, i64> = std::collections::BTreeMap::new();
    for c in &released {
        *counts.entry(c.as_str()).or_default() += 1;
    }
    for (c, n) in counts {
        sqlx::query("UPDATE campaign_counters SET used = used - $2, updated_ms = $3 WHERE campaign = $1")
            .bind(c)
            .bind(n)
            .bind(now_ms)
            .execute(&mut *conn)
            .await
            .map_err(db_err)?;
    }
    Ok(released)
}

/// Takes one slot of `cap` for quote `quote_id` until `now_ms + CAP_HOLD_MS`, inside the
/// caller's transaction (the claim of the quote). False: no slot left. A quote holding a slot
/// already (a retried checkout) keeps it and takes no second one.
///
/// Atomic fleet-wide: the increment is one `UPDATE … WHERE used < cap` on the campaign's
/// counter row. On Postgres concurrent reservations queue on that row's lock and each re-reads
/// `used` after the one before committed; SQLite has one writer at a time.
async fn reserve_in(conn: &mut AnyConnection, cap: &CampaignCap, quote_id: &str, now_ms: i64) -> StoreResult<bool> {
    release_expired_in(conn, Some(&cap.key), now_ms).await?;
    let held = sqlx::query("SELECT 1 AS held FROM campaign_redemptions WHERE quote_id = $1 AND released_ms IS NULL")
        .bind(quote_id)
        .fetch_optional(&mut *conn)
        .await
        .map_err(db_err)?;
    if held.is_some() {
        return Ok(true);
    }
    sqlx::query("INSERT INTO campaign_counters (campaign, used, updated_ms) VALUES ($1, 0, $2) ON CONFLICT (campaign) DO NOTHING")
        .bind(cap.key.as_str())
        .bind(now_ms)
        .execute(&mut *conn)
        .await
        .map_err(db_err)?;
    let took =
        sqlx::query("UPDATE campaign_counters SET used = used + 1, updated_ms = $3 WHERE campaign = $1 AND used < $2 RETURNING used")
            .bind(cap.key.as_str())
            .bind(cap.max)
            .bind(now_ms)
            .fetch_optional(&mut *conn)
            .await
            .map_err(db_err)?;
    if took.is_none() {
        return Ok(false);
    }
    sqlx::query(
        "INSERT INTO campaign_redemptions (quote_id, campaign, reserved_ms, expires_ms) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (quote_id) DO UPDATE SET campaign = $2, reserved_ms = $3, expires_ms = $4, paid_ms = NULL, released_ms = NULL",
    )
    .bind(quote_id)
    .bind(cap.key.as_str())
    .bind(now_ms)
    .bind(now_ms + CAP_HOLD_MS)
    .execute(&mut *conn)
    .await
    .map_err(db_err)?;
    Ok(true)
}

/// The payment of quote `quote_id` was applied: its slot is paid and kept for good. A slot
/// released before the payment came (Telegram later than the hold) is taken again, past the
/// cap if need be: the buyer was charged the discounted price, and the count must say so.
async fn redeem_in(conn: &mut AnyConnection, quote_id: &str, now_ms: i64) -> StoreResult<()> {
    // Lock the hold first (a no-op write) and read it as it is now: a sweep releasing it at
    // the same moment either went first (we see released_ms) or waits for us.
    let row = sqlx::query(
        "UPDATE campaign_redemptions SET quote_id = quote_id WHERE quote_id = $1 AND paid_ms IS NULL RETURNING campaign, released_ms",
    )
    .bind(quote_id)
    .fetch_optional(&mut *conn)
    .await
    .map_err(db_err)?;
    let Some(row) = row else { return Ok(()) };
    let campaign: String = col(&row, "campaign")?;
    let released: Option<i64> = col(&row, "released_ms")?;
    sqlx::query("UPDATE campaign_redemptions SET paid_ms = $2, released_ms = NULL WHERE quote_id = $1")
        .bind(quote_id)
        .bind(now_ms)
        .execute(&mut *conn)
        .await
        .map_err(db_err)?;
    if released.is_some() {
        sqlx::query("UPDATE campaign_counters SET used = used + 1, updated_ms = $2 WHERE campaign = $1")
            .bind(campaign.as_str())
            .bind(now_ms)
            .execute(&mut *conn)
            .await
            .map_err(db_err)?;
    }
    Ok(())
}

impl SqlStore {
    async fn payment(&self, charge_id: &str) -> StoreResult<Option<Payment>> {
        let row = sqlx::query(concat!("SELECT ", payment_columns!(), " FROM payments WHERE telegram_payment_charge_id = $1"))
            .bind(charge_id)
            .fetch_optional(self.pool())
            .await
            .map_err(db_err)?;
        row.as_ref().map(payment_from_row).transpose()
    }
}

#[async_trait::async_trait]
impl Quotes for SqlStore {
    async fn create_quote(&self, q: &NewQuote) -> StoreResult<Quote> {
        let row = sqlx::query(concat!(
            "INSERT INTO quotes (id, bot, user_id, plan_id, price_stars, base_stars, campaign_id, vip_days, lock_credits, \
             created_ms, expires_ms, campaign_key, campaign_cap) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) \
             RETURNING ",
            quote_columns!()
        ))
        .bind(new_quote_id())
        .bind(q.bot.as_str())
        .bind(q.user_id)
        .bind(q.plan_id.as_str())
        .bind(q.price_stars)
        .bind(q.base_stars)
        .bind(q.campaign_id.as_deref())
        .bind(q.vip_days)
        .bind(q.lock_credits)
        .bind(q.created_ms)
        .bind(q.expires_ms)
        .bind(q.campaign_cap.as_ref().map(|c| c.key.as_str()))
        .bind(q.campaign_cap.as_ref().map(|c| c.max))
        .fetch_one(self.pool())
        .await
        .map_err(db_err)?;
        quote_from_row(&row)
    }

    async fn quote(&self, bot: &str, id: &str) -> StoreResult<Option<Quote>> {
        let row = sqlx::query(concat!("SELECT ", quote_columns!(), " FROM quotes WHERE id = $1 AND bot = $2"))
            .bind(id)
            .bind(bot)
            .fetch_optional(self.pool())
            .await
            .map_err(db_err)?;
        row.as_ref().map(quote_from_row).transpose()
    }

    async fn claim_quote(&self, bot: &str, id: &str, payer: i64, query_id: &str, now_ms: i64) -> StoreResult<Result<Quote, QuoteRefusal>> {
        // One transaction whose first statement is the claim (a write: SQLite then serializes
        // writers from the start). On Postgres a concurrent claim of the same quote waits for
        // the row lock and re-checks the WHERE (then finds checkout_id taken).
        let mut tx = self.pool().begin().await.map_err(db_err)?;
        let claimed = sqlx::query(concat!(
            "UPDATE quotes SET checkout_id = $4, checkout_ms = $5 \
             WHERE id = $1 AND bot = $2 AND user_id = $3 AND expires_ms > $5 AND used_ms IS NULL \
             AND (checkout_id IS NULL OR checkout_id = $4) RETURNING ",
            quote_columns!()
        ))
        .bind(id)
        .bind(bot)
        .bind(payer)
        .bind(query_id)
        .bind(now_ms)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_err)?;
        let claimed = match claimed {
            Some(row) => {
                let quote = quote_from_row(&row)?;
                if let Some(cap) = &quote.campaign_cap
                    && !reserve_in(&mut tx, cap, &quote.id, now_ms).await?
                {
                    tx.rollback().await.map_err(db_err)?;
                    return Ok(Err(QuoteRefusal::CapReached));
                }
                tx.commit().await.map_err(db_err)?;
                Some(quote)
            }
            None => {
                tx.rollback().await.map_err(db_err)?;
                None
            }
        };
        if let Some(quote) = claimed {
            return Ok(Ok(quote));
        }
        // Why not, for the payer's message.
        Ok(Err(match self.quote(bot, id).await? {
            None => QuoteRefusal::Unknown,
            Some(q) if q.user_id != payer => QuoteRefusal::NotYours,
            Some(q) if q.used_ms.is_some() || q.checkout_id.as_deref().is_some_and(|c| c != query_id) => QuoteRefusal::Used,
            Some(_) => QuoteRefusal::Expired,
        }))
    }

    async fn campaign_redemptions(&self, campaign_key: &str, now_ms: i64) -> StoreResult<i64> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS held FROM campaign_redemptions WHERE campaign = $1 AND released_ms IS NULL \
             AND (paid_ms IS NOT NULL OR expires_ms > $2)",
        )
        .bind(campaign_key)
        .bind(now_ms)
        .fetch_one(self.pool())
        .await
        .map_err(db_err)?;
        row.try_get::<i64, _>("held").map_err(|e| corrupt(format_args!("campaign redemptions: {e}")))
    }

    async fn release_expired_holds(&self, now_ms: i64) -> StoreResult<Vec<String>> {
        let mut tx = self.pool().begin().await.map_err(db_err)?;
        let released = release_expired_in(&mut tx, None, now_ms).await?;
        tx.commit().await.map_err(db_err)?;
        Ok(released)
    }
}

#[async_trait::async_trait]
impl Payments for SqlStore {
    async fn apply_payment(&self, p: &NewPayment) -> StoreResult<Applied> {
        let mut tx = self.pool().begin().await.map_err(db_err)?;
        let inserted = sqlx::query(
            "INSERT INTO payments (telegram_payment_charge_id, bot, user_id, quote_id, plan_id, stars, vip_days, lock_credits, created_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
             ON CONFLICT (telegram_payment_charge_id) DO NOTHING RETURNING telegram_payment_charge_id",
        )
        .bind(p.charge_id.as_str())
        .bind(p.bot.as_str())
        .bind(p.user_id)
        .bind(p.quote_id.as_deref())
        .bind(p.plan_id.as_str())
        .bind(p.stars)
        .bind(p.vip_days)
        .bind(p.lock_credits)
        .bind(p.now_ms)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_err)?;
        if inserted.is_none() {
            tx.rollback().await.map_err(db_err)?;
            let payment = self
                .payment(&p.charge_id)
                .await?
                .ok_or_else(|| corrupt(format_args!("payment {}: conflict on insert, but no row", p.charge_id)))?;
            return Ok(Applied { payment, first: false });
        }

        let mut vip_until_ms = None;
        if p.vip_days > 0 || p.subscription_until_ms.is_some() {
            let row = match p.subscription_until_ms {
                // A subscription's period: VIP lasts at least to its end (a longer VIP bought
                // separately is kept).
                Some(until) => sqlx::query(
                    "UPDATE users SET vip_until_ms = \
                       CASE WHEN vip_until_ms IS NOT NULL AND vip_until_ms > $3 THEN vip_until_ms ELSE $3 END \
                     WHERE bot = $1 AND user_id = $2 RETURNING vip_until_ms",
                )
                .bind(p.bot.as_str())
                .bind(p.user_id)
                .bind(until),
                // Stacks onto an unexpired VIP; an expired or absent one starts now.
                None => sqlx::query(STACK_VIP).bind(p.bot.as_str()).bind(p.user_id).bind(p.now_ms).bind(p.vip_days * DAY_MS),
            }
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_err)?;
            let Some(row) = row else {
                tx.rollback().await.map_err(db_err)?;
                return Err(corrupt(format_args!("payment {} for member {}:{} who does not exist", p.charge_id, p.bot, p.user_id)));
            };
            let until: i64 = col(&row, "vip_until_ms")?;
            sqlx::query("UPDATE payments SET vip_until_ms = $1, subscription_until_ms = $3 WHERE telegram_payment_charge_id = $2")
                .bind(until)
                .bind(p.charge_id.as_str())
                .bind(p.subscription_until_ms)
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
            vip_until_ms = Some(until);
        }
        if p.lock_credits > 0 {
            let entry = LedgerEntry {
                idem_key: format!("pay:{}", p.charge_id),
                bot: p.bot.clone(),
                user_id: p.user_id,
                delta: p.lock_credits,
                reason: "purchase".into(),
                reference: p.charge_id.clone(),
                created_ms: p.now_ms,
            };
            // A credit is never refused; a duplicate key can't be (the charge row is new).
            append_in(&mut tx, &entry).await?;
        }
        if let Some(quote) = &p.quote_id {
            sqlx::query("UPDATE quotes SET used_ms = $1 WHERE id = $2 AND bot = $3 AND used_ms IS NULL")
                .bind(p.now_ms)
                .bind(quote.as_str())
                .bind(p.bot.as_str())
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
            redeem_in(&mut tx, quote, p.now_ms).await?;
        }
        tx.commit().await.map_err(db_err)?;
        Ok(Applied {
            payment: Payment {
                charge_id: p.charge_id.clone(),
                bot: p.bot.clone(),
                user_id: p.user_id,
                quote_id: p.quote_id.clone(),
                plan_id: p.plan_id.clone(),
                stars: p.stars,
                vip_days: p.vip_days,
                lock_credits: p.lock_credits,
                vip_until_ms,
                created_ms: p.now_ms,
                refunded_ms: None,
                refund_spent_credits: None,
            },
            first: true,
        })
    }

    async fn payment_of_charge(&self, bot: &str, charge_id: &str) -> StoreResult<Option<Payment>> {
        Ok(self.payment(charge_id).await?.filter(|p| p.bot == bot))
    }

    async fn refund_payment(&self, bot: &str, charge_id: &str, now_ms: i64) -> StoreResult<RefundOutcome> {
        let mut tx = self.pool().begin().await.map_err(db_err)?;
        // First statement a write (SQLite serializes from here; Postgres locks the row): a
        // concurrent refund of the same charge waits, re-checks refunded_ms, and finds it set.
        let row = sqlx::query(concat!(
            "UPDATE payments SET refunded_ms = $3 WHERE telegram_payment_charge_id = $1 AND bot = $2 AND refunded_ms IS NULL \
             RETURNING ",
            payment_columns!()
        ))
        .bind(charge_id)
        .bind(bot)
        .bind(now_ms)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_err)?;
        let Some(row) = row else {
            tx.rollback().await.map_err(db_err)?;
            return Ok(match self.payment_of_charge(bot, charge_id).await? {
                Some(p) => RefundOutcome::Already(p),
                None => RefundOutcome::Unknown,
            });
        };
        let mut payment = payment_from_row(&row)?;

        let mut vip_until_ms = None;
        if payment.vip_days > 0 {
            // Shortened by the payment's days, never to before now; an ended VIP stays ended.
            let row = sqlx::query(
                "UPDATE users SET vip_until_ms = \
                   CASE WHEN vip_until_ms - $4 > $3 THEN vip_until_ms - $4 ELSE $3 END \
                 WHERE bot = $1 AND user_id = $2 AND vip_until_ms IS NOT NULL AND vip_until_ms > $3 RETURNING vip_until_ms",
            )
            .bind(bot)
            .bind(payment.user_id)
            .bind(now_ms)
            .bind(payment.vip_days * DAY_MS)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_err)?;
            vip_until_ms = row.map(|r| col::<i64>(&r, "vip_until_ms")).transpose()?;
        }

        let (mut removed, mut spent) = (0, 0);
        if payment.lock_credits > 0 {
            // Read the balance under the wallet's lock (a no-op UPDATE, as append_in does).
            let balance = sqlx::query("UPDATE wallets SET updated_ms = updated_ms WHERE bot = $1 AND user_id = $2 RETURNING balance")
                .bind(bot)
                .bind(payment.user_id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db_err)?
                .map(|r| col::<i64>(&r, "balance"))
                .transpose()?
                .unwrap_or(0);
            removed = payment.lock_credits.min(balance.max(0));
            spent = payment.lock_credits - removed;
            if removed > 0 {
                let entry = LedgerEntry {
                    idem_key: format!("refund:{charge_id}"),
                    bot: bot.to_string(),
                    user_id: payment.user_id,
                    delta: -removed,
                    reason: "refund".into(),
                    reference: charge_id.to_string(),
                    created_ms: now_ms,
                };
                match append_in(&mut tx, &entry).await? {
                    LedgerOutcome::Written { .. } => {}
                    other => {
                        tx.rollback().await.map_err(db_err)?;
                        return Err(corrupt(format_args!("refund of {charge_id}: ledger refused the reversal: {other:?}")));
                    }
                }
            }
            sqlx::query("UPDATE payments SET refund_spent_credits = $2 WHERE telegram_payment_charge_id = $1")
                .bind(charge_id)
                .bind(spent)
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
            payment.refund_spent_credits = Some(spent);
        }
        tx.commit().await.map_err(db_err)?;
        Ok(RefundOutcome::Reversed { payment, vip_until_ms, credits_removed: removed, credits_spent: spent })
    }

    async fn claim_vip_notices(&self, bot: &str, now_ms: i64) -> StoreResult<Vec<VipNotice>> {
        // Each UPDATE re-checks its WHERE on the row it locks (Postgres) or runs alone
        // (SQLite), so a deadline is claimed by one replica.
        let soon = sqlx::query(
            "UPDATE users SET vip_reminded_for = vip_until_ms \
             WHERE bot = $1 AND reachable = 1 AND vip_until_ms > $2 AND vip_until_ms <= $3 \
             AND (vip_reminded_for IS NULL OR vip_reminded_for <> vip_until_ms) \
             RETURNING user_id, language, vip_until_ms",
        )
        .bind(bot)
        .bind(now_ms)
        .bind(now_ms + VIP_REMINDER_MS)
        .fetch_all(self.pool())
        .await
        .map_err(db_err)?;
        let ended = sqlx::query(
            "UPDATE users SET vip_ended_for = vip_until_ms \
             WHERE bot = $1 AND reachable = 1 AND vip_until_ms <= $2 AND vip_until_ms > $3 \
             AND (vip_ended_for IS NULL OR vip_ended_for <> vip_until_ms) \
             RETURNING user_id, language, vip_until_ms",
        )
        .bind(bot)
        .bind(now_ms)
        .bind(now_ms - VIP_ENDED_NOTICE_WINDOW_MS)
        .fetch_all(self.pool())
        .await
        .map_err(db_err)?;
        let notice = |row: &sqlx::any::AnyRow, ended: bool| -> StoreResult<VipNotice> {
            Ok(VipNotice { user_id: col(row, "user_id")?, language: col(row, "language")?, vip_until_ms: col(row, "vip_until_ms")?, ended })
        };
        let mut out = Vec::with_capacity(soon.len() + ended.len());
        for row in &soon {
            out.push(notice(row, false)?);
        }
        for row in &ended {
            out.push(notice(row, true)?);
        }
        Ok(out)
    }

    async fn reconcile_offset(&self, bot: &str) -> StoreResult<i64> {
        let row = sqlx::query("SELECT next_offset FROM star_reconcile WHERE bot = $1")
            .bind(bot)
            .fetch_optional(self.pool())
            .await
            .map_err(db_err)?;
        Ok(row.as_ref().map(|r| col(r, "next_offset")).transpose()?.unwrap_or(0))
    }

    async fn save_reconcile_offset(&self, bot: &str, from: i64, to: i64, now_ms: i64) -> StoreResult<bool> {
        // A compare-and-set: the first pass to move the offset from where it was read wins;
        // an upsert whose WHERE fails affects no row (both databases re-check it on the row
        // another transaction just wrote).
        let done = sqlx::query(
            "INSERT INTO star_reconcile (bot, next_offset, updated_ms) VALUES ($1, $2, $3) \
             ON CONFLICT (bot) DO UPDATE SET next_offset = excluded.next_offset, updated_ms = excluded.updated_ms \
             WHERE star_reconcile.next_offset = $4",
        )
        .bind(bot)
        .bind(to)
        .bind(now_ms)
        .bind(from)
        .execute(self.pool())
        .await
        .map_err(db_err)?;
        Ok(done.rows_affected() == 1)
    }

    async fn record_mismatch(&self, bot: &str, charge_id: &str, kind: &str, stars: i64, now_ms: i64) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO reconcile_mismatches (bot, charge_id, kind, stars, at_ms) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (bot, charge_id, kind) DO NOTHING",
        )
        .bind(bot)
        .bind(charge_id)
        .bind(kind)
        .bind(stars)
        .bind(now_ms)
        .execute(self.pool())
        .await
        .map_err(db_err)?;
        Ok(())
    }

    async fn payments_of(&self, bot: &str, user_id: i64, limit: u32) -> StoreResult<Vec<Payment>> {
        // (see also `SqlStore::payments_between`, the admin role's export)
        let rows = sqlx::query(concat!(
            "SELECT ",
            payment_columns!(),
            " FROM payments WHERE bot = $1 AND user_id = $2 ORDER BY created_ms DESC, telegram_payment_charge_id LIMIT $3"
        ))
        .bind(bot)
        .bind(user_id)
        .bind(i64::from(limit))
        .fetch_all(self.pool())
        .await
        .map_err(db_err)?;
        rows.iter().map(payment_from_row).collect()
    }
}

#[async_trait::async_trait]
impl Ledger for SqlStore {
    async fn append(&self, entry: &LedgerEntry) -> StoreResult<LedgerOutcome> {
        let mut tx = self.pool().begin().await.map_err(db_err)?;
        let outcome = append_in(&mut tx, entry).await?;
        match outcome {
            LedgerOutcome::Written { .. } => tx.commit().await.map_err(db_err)?,
            _ => tx.rollback().await.map_err(db_err)?,
        }
        Ok(outcome)
    }

    async fn credits(&self, bot: &str, user_id: i64) -> StoreResult<i64> {
        let row = sqlx::query("SELECT CAST(COALESCE(SUM(delta), 0) AS BIGINT) AS balance FROM ledger WHERE bot = $1 AND user_id = $2")
            .bind(bot)
            .bind(user_id)
            .fetch_one(self.pool())
            .await
            .map_err(db_err)?;
        row.try_get::<i64, _>("balance").map_err(|e| corrupt(format_args!("ledger balance: {e}")))
    }
}

fn subscription_from_row(row: &sqlx::any::AnyRow) -> StoreResult<Subscription> {
    Ok(Subscription {
        bot: col(row, "bot")?,
        user_id: col(row, "user_id")?,
        plan_id: col(row, "plan_id")?,
        first_charge_id: col(row, "first_charge_id")?,
        until_ms: col(row, "until_ms")?,
        canceled_ms: col(row, "canceled_ms")?,
    })
}

#[async_trait::async_trait]
impl Subscriptions for SqlStore {
    async fn record_subscription(&self, s: &Subscription, first: bool, now_ms: i64) -> StoreResult<()> {
        let sql = if first {
            "INSERT INTO subscriptions (bot, user_id, plan_id, first_charge_id, until_ms, created_ms, updated_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $6) ON CONFLICT (bot, user_id, plan_id) DO UPDATE SET \
             first_charge_id = excluded.first_charge_id, until_ms = excluded.until_ms, canceled_ms = NULL, updated_ms = excluded.updated_ms \
             WHERE subscriptions.first_charge_id = excluded.first_charge_id OR subscriptions.until_ms <= excluded.until_ms"
        } else {
            // A renewal names no first charge: the member's subscription to the plan. ($4 is
            // bound for the statement's shape and unused.)
            "UPDATE subscriptions SET until_ms = CASE WHEN until_ms > $5 THEN until_ms ELSE $5 END, updated_ms = $6 \
             WHERE bot = $1 AND user_id = $2 AND plan_id = $3 AND first_charge_id <> '' AND $4 = $4"
        };
        sqlx::query(sql)
            .bind(s.bot.as_str())
            .bind(s.user_id)
            .bind(s.plan_id.as_str())
            .bind(s.first_charge_id.as_str())
            .bind(s.until_ms)
            .bind(now_ms)
            .execute(self.pool())
            .await
            .map_err(db_err)?;
        Ok(())
    }

    async fn subscriptions_of(&self, bot: &str, user_id: i64) -> StoreResult<Vec<Subscription>> {
        let rows = sqlx::query(
            "SELECT bot, user_id, plan_id, first_charge_id, until_ms, canceled_ms FROM subscriptions \
             WHERE bot = $1 AND user_id = $2 ORDER BY until_ms DESC",
        )
        .bind(bot)
        .bind(user_id)
        .fetch_all(self.pool())
        .await
        .map_err(db_err)?;
        rows.iter().map(subscription_from_row).collect()
    }

    async fn cancel_subscription(&self, bot: &str, user_id: i64, plan_id: &str, now_ms: i64) -> StoreResult<Option<Subscription>> {
        let row = sqlx::query(
            "UPDATE subscriptions SET canceled_ms = CASE WHEN canceled_ms IS NULL THEN $4 ELSE canceled_ms END, updated_ms = $4 \
             WHERE bot = $1 AND user_id = $2 AND plan_id = $3 \
             RETURNING bot, user_id, plan_id, first_charge_id, until_ms, canceled_ms",
        )
        .bind(bot)
        .bind(user_id)
        .bind(plan_id)
        .bind(now_ms)
        .fetch_optional(self.pool())
        .await
        .map_err(db_err)?;
        row.as_ref().map(subscription_from_row).transpose()
    }
}
