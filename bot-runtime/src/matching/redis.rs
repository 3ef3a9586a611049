//! The Redis matching store: each search is one Lua script run (see match.lua).

use redis::aio::ConnectionManager;
use redis::{AsyncCommands as _, Script};

use super::{MatchError, MatchPool, Member, Rules, SearchOutcome, Seeker, Tier};
use crate::keys::Keys;

/// How long a block is remembered (a year: "never again" for any practical purpose).
const BLOCK_TTL_SECS: i64 = 365 * 24 * 3600;

pub struct RedisPool {
    conn: ConnectionManager,
    keys: Keys,
    search: Script,
    end_chat: Script,
    cancel: Script,
    cancel_person: Script,
}

impl RedisPool {
    pub fn new(conn: ConnectionManager, keys: Keys) -> Self {
        Self {
            conn,
            keys,
            search: Script::new(include_str!("match.lua")),
            end_chat: Script::new(include_str!("end_chat.lua")),
            cancel: Script::new(include_str!("cancel.lua")),
            cancel_person: Script::new(include_str!("cancel_person.lua")),
        }
    }
}

fn unavailable(e: redis::RedisError) -> MatchError {
    MatchError::Unavailable(e.to_string())
}

#[async_trait::async_trait]
impl MatchPool for RedisPool {
    async fn search(&self, pool: &str, seeker: &Seeker, now_ms: i64, rules: Rules) -> Result<SearchOutcome, MatchError> {
        let mut conn = self.conn.clone();
        let reply: Vec<String> = self
            .search
            .key(self.keys.pool(pool))
            .arg(seeker.member.to_string())
            .arg(seeker.gender.code())
            .arg(seeker.want.code())
            .arg(if seeker.vip { "1" } else { "0" })
            .arg(now_ms)
            .arg(rules.recent_window.as_millis() as i64)
            .arg(rules.scan_limit.max(1))
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        match reply.as_slice() {
            [kind, partner] if kind == "matched" => Ok(SearchOutcome::Matched { partner: partner.parse()? }),
            [kind, partner] if kind == "in_chat" => Ok(SearchOutcome::AlreadyInChat { partner: partner.parse()? }),
            [kind, holder] if kind == "elsewhere" => Ok(SearchOutcome::BusyElsewhere { holder: holder.parse()? }),
            [kind] if kind == "queued" => Ok(SearchOutcome::Queued),
            other => Err(MatchError::Corrupt(format!("match script answered {other:?}"))),
        }
    }

    async fn cancel(&self, pool: &str, member: &Member) -> Result<bool, MatchError> {
        let mut conn = self.conn.clone();
        let removed: u64 =
            self.cancel.key(self.keys.pool(pool)).arg(member.to_string()).invoke_async(&mut conn).await.map_err(unavailable)?;
        Ok(removed > 0)
    }

    async fn end_chat(&self, pool: &str, member: &Member) -> Result<Option<Member>, MatchError> {
        let mut conn = self.conn.clone();
        let partner: Option<String> =
            self.end_chat.key(self.keys.pool(pool)).arg(member.to_string()).invoke_async(&mut conn).await.map_err(unavailable)?;
        partner.map(|p| p.parse()).transpose()
    }

    async fn partner(&self, pool: &str, member: &Member) -> Result<Option<Member>, MatchError> {
        let mut conn = self.conn.clone();
        let partner: Option<String> = conn.get(self.keys.pair(pool, member)).await.map_err(unavailable)?;
        partner.map(|p| p.parse()).transpose()
    }

    async fn waiting(&self, pool: &str, member: &Member) -> Result<bool, MatchError> {
        let mut conn = self.conn.clone();
        let queue: Option<String> = conn.hget(self.keys.profile(pool, member), "q").await.map_err(unavailable)?;
        Ok(queue.is_some())
    }

    async fn active_chats(&self, pool: &str) -> Result<u64, MatchError> {
        let mut conn = self.conn.clone();
        let n: Option<i64> = conn.get(self.keys.active_chats(pool)).await.map_err(unavailable)?;
        Ok(n.unwrap_or(0).max(0) as u64)
    }

    async fn block(&self, pool: &str, by: i64, other: i64) -> Result<(), MatchError> {
        let mut conn = self.conn.clone();
        let key = self.keys.blocked(pool, by);
        let _: () = redis::pipe().sadd(&key, other).expire(&key, BLOCK_TTL_SECS).query_async(&mut conn).await.map_err(unavailable)?;
        Ok(())
    }

    async fn members_of(&self, pool: &str, bot: &str) -> Result<Vec<Member>, MatchError> {
        let mut conn = self.conn.clone();
        let mut out = Vec::new();
        // Chats (`pair:<bot>:<user>`) and waiting places (`u:<bot>:<user>`, a hash that
        // exists only while it holds the queue). Bot names are DNS labels: no glob characters.
        for kind in ["pair", "u"] {
            let prefix = format!("{}{kind}:{bot}:", self.keys.pool(pool));
            for key in crate::keys::scan_prefix(&mut conn, &prefix).await.map_err(unavailable)? {
                if let Some(user) = key.strip_prefix(&prefix).and_then(|u| u.parse::<i64>().ok()) {
                    out.push(Member::new(bot, user));
                }
            }
        }
        out.sort();
        out.dedup();
        Ok(out)
    }

    async fn cancel_person(&self, pool: &str, person: i64) -> Result<u64, MatchError> {
        let mut conn = self.conn.clone();
        self.cancel_person.key(self.keys.pool(pool)).arg(person).invoke_async(&mut conn).await.map_err(unavailable)
    }

    async fn queue_len(&self, pool: &str, tier: Tier) -> Result<u64, MatchError> {
        let mut conn = self.conn.clone();
        let mut pipe = redis::pipe();
        for q in self.keys.queues(pool, tier) {
            pipe.zcard(q);
        }
        let lens: Vec<u64> = pipe.query_async(&mut conn).await.map_err(unavailable)?;
        Ok(lens.iter().sum())
    }
}
