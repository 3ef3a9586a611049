-- The admin role, slice 5 (docs/ADMIN.md, "The overview's counts"). Same as
-- migrations/postgres/0020_admin_counts.sql, in SQLite's dialect (row triggers: SQLite has no
-- statement triggers or transition tables; the embedded database is one process's).

CREATE TABLE admin_counts (
    name  TEXT    NOT NULL,
    shard INTEGER NOT NULL,
    n     INTEGER NOT NULL,
    PRIMARY KEY (name, shard)
);

CREATE TRIGGER persons_counted_insert AFTER INSERT ON persons BEGIN
    INSERT INTO admin_counts (name, shard, n) VALUES ('people', NEW.user_id % 16, 1)
    ON CONFLICT (name, shard) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER persons_counted_delete AFTER DELETE ON persons BEGIN
    INSERT INTO admin_counts (name, shard, n) VALUES ('people', OLD.user_id % 16, -1)
    ON CONFLICT (name, shard) DO UPDATE SET n = n - 1;
END;
CREATE TRIGGER users_counted_insert AFTER INSERT ON users BEGIN
    INSERT INTO admin_counts (name, shard, n) VALUES ('members:' || NEW.bot, NEW.user_id % 16, 1)
    ON CONFLICT (name, shard) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER users_counted_delete AFTER DELETE ON users BEGIN
    INSERT INTO admin_counts (name, shard, n) VALUES ('members:' || OLD.bot, OLD.user_id % 16, -1)
    ON CONFLICT (name, shard) DO UPDATE SET n = n - 1;
END;
CREATE TRIGGER users_counted_move AFTER UPDATE OF bot, user_id ON users
    WHEN OLD.bot IS NOT NEW.bot OR OLD.user_id IS NOT NEW.user_id BEGIN
    INSERT INTO admin_counts (name, shard, n) VALUES ('members:' || OLD.bot, OLD.user_id % 16, -1)
    ON CONFLICT (name, shard) DO UPDATE SET n = n - 1;
    INSERT INTO admin_counts (name, shard, n) VALUES ('members:' || NEW.bot, NEW.user_id % 16, 1)
    ON CONFLICT (name, shard) DO UPDATE SET n = n + 1;
END;

INSERT INTO admin_counts (name, shard, n)
SELECT 'people', user_id % 16, COUNT(*) FROM persons GROUP BY 2;
INSERT INTO admin_counts (name, shard, n)
SELECT 'members:' || bot, user_id % 16, COUNT(*) FROM users GROUP BY 1, 2;

CREATE INDEX persons_first_seen ON persons (first_seen_ms);
CREATE INDEX users_created_bot ON users (created_ms, bot);
CREATE INDEX users_vip_in_force ON users (vip_until_ms, bot) WHERE vip_until_ms IS NOT NULL;
