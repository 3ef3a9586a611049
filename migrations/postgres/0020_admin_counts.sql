-- The admin role, slice 5 (docs/ADMIN.md, "The overview's counts"). Same as
-- migrations/sqlite/0020_admin_counts.sql, in PostgreSQL's dialect.
--
-- The overview counted people and members with full scans of persons and users on every
-- request (0.3-0.4 s at p95 on 1M people). Totals are now counters kept by triggers in the
-- writing transaction (so every runtime replica's writes are counted, old releases' too, and
-- a rolled-back write counts nothing); "new today / this week" and active VIPs are index range
-- scans of the window.

-- admin_counts: 'people' (rows of persons) and 'members:<bot>' (rows of users per bot), each
-- split over 16 shards by user_id % 16 so concurrent sign-ups rarely wait on one row; the
-- count is the sum of a name's shards.
CREATE TABLE admin_counts (
    name  TEXT     NOT NULL,
    shard SMALLINT NOT NULL,
    n     BIGINT   NOT NULL,
    PRIMARY KEY (name, shard)
);
COMMENT ON TABLE admin_counts IS 'Row counts for the admin overview (people, members per bot), kept by triggers on persons and users; sum the shards.';

-- One upsert per statement (transition tables), shards in order (no deadlock between two
-- multi-row statements).
CREATE FUNCTION admin_count_people() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO admin_counts (name, shard, n)
        SELECT 'people', user_id % 16, COUNT(*) FROM added GROUP BY 2 ORDER BY 2
        ON CONFLICT (name, shard) DO UPDATE SET n = admin_counts.n + excluded.n;
    ELSE
        INSERT INTO admin_counts (name, shard, n)
        SELECT 'people', user_id % 16, -COUNT(*) FROM removed GROUP BY 2 ORDER BY 2
        ON CONFLICT (name, shard) DO UPDATE SET n = admin_counts.n + excluded.n;
    END IF;
    RETURN NULL;
END $$;

CREATE FUNCTION admin_count_members() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO admin_counts (name, shard, n)
        SELECT 'members:' || bot, user_id % 16, COUNT(*) FROM added GROUP BY 1, 2 ORDER BY 1, 2
        ON CONFLICT (name, shard) DO UPDATE SET n = admin_counts.n + excluded.n;
    ELSE
        INSERT INTO admin_counts (name, shard, n)
        SELECT 'members:' || bot, user_id % 16, -COUNT(*) FROM removed GROUP BY 1, 2 ORDER BY 1, 2
        ON CONFLICT (name, shard) DO UPDATE SET n = admin_counts.n + excluded.n;
    END IF;
    RETURN NULL;
END $$;

-- A member row moved to another bot id (SqlStore::adopt_legacy_bot renames bare bot names).
CREATE FUNCTION admin_count_member_moved() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO admin_counts (name, shard, n) VALUES ('members:' || OLD.bot, OLD.user_id % 16, -1)
    ON CONFLICT (name, shard) DO UPDATE SET n = admin_counts.n + excluded.n;
    INSERT INTO admin_counts (name, shard, n) VALUES ('members:' || NEW.bot, NEW.user_id % 16, 1)
    ON CONFLICT (name, shard) DO UPDATE SET n = admin_counts.n + excluded.n;
    RETURN NULL;
END $$;

-- The triggers first: creating them locks persons and users against writes until this
-- migration commits, so the counts below see every row and no write is missed or counted twice.
CREATE TRIGGER persons_counted_insert AFTER INSERT ON persons REFERENCING NEW TABLE AS added
    FOR EACH STATEMENT EXECUTE FUNCTION admin_count_people();
CREATE TRIGGER persons_counted_delete AFTER DELETE ON persons REFERENCING OLD TABLE AS removed
    FOR EACH STATEMENT EXECUTE FUNCTION admin_count_people();
CREATE TRIGGER users_counted_insert AFTER INSERT ON users REFERENCING NEW TABLE AS added
    FOR EACH STATEMENT EXECUTE FUNCTION admin_count_members();
CREATE TRIGGER users_counted_delete AFTER DELETE ON users REFERENCING OLD TABLE AS removed
    FOR EACH STATEMENT EXECUTE FUNCTION admin_count_members();
CREATE TRIGGER users_counted_move AFTER UPDATE OF bot, user_id ON users
    FOR EACH ROW WHEN (OLD.bot IS DISTINCT FROM NEW.bot OR OLD.user_id IS DISTINCT FROM NEW.user_id)
    EXECUTE FUNCTION admin_count_member_moved();

INSERT INTO admin_counts (name, shard, n)
SELECT 'people', user_id % 16, COUNT(*) FROM persons GROUP BY 2;
INSERT INTO admin_counts (name, shard, n)
SELECT 'members:' || bot, user_id % 16, COUNT(*) FROM users GROUP BY 1, 2;

-- The windows: new people and members today / this week, and VIPs in force (each a range of
-- the index, however many rows the tables hold).
CREATE INDEX persons_first_seen ON persons (first_seen_ms);
CREATE INDEX users_created_bot ON users (created_ms, bot);
CREATE INDEX users_vip_in_force ON users (vip_until_ms, bot) WHERE vip_until_ms IS NOT NULL;
