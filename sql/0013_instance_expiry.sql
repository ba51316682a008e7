-- 0013: each instance says how long its heartbeat lasts.
--
-- Apply with `chat-server migrate`, or by hand:  psql -v ON_ERROR_STOP=1 -1 -f sql/0013_instance_expiry.sql
--
-- An instance's sessions count while its heartbeat is younger than its expiry
-- (PRESENCE_EXPIRY_SECONDS). Each instance used to judge every other by its own setting, so
-- an instance configured with a shorter expiry (a configuration being rolled out, a test)
-- reaped healthy instances that beat less often. Now each instance writes its expiry with
-- its heartbeat, and every reader (the servers, the views below) judges it by that. An
-- instance of an older version (during a rolling upgrade) leaves it NULL, and is judged as
-- before: by the reader's own expiry (the views: the default, 20 s).

ALTER TABLE chat_instances ADD COLUMN expires_after interval;

-- As in 0011, with each instance judged by its own expiry.
CREATE OR REPLACE VIEW chat_admin_users AS
SELECT u.user_id, u.user_name, u.is_active,
       u.password_hash IS NOT NULL AS is_registered,
       (SELECT count(*) FROM room_participants p WHERE p.user_id = u.user_id AND p.is_active) AS rooms,
       EXISTS (
           SELECT 1 FROM presence_sessions s JOIN chat_instances i USING (instance_id)
           WHERE s.user_id = u.user_id AND i.heartbeat_at + coalesce(i.expires_after, interval '20 seconds') > now()
       ) AS is_online,
       u.last_seen_at, u.created_at
FROM users u;

-- As in 0011, plus whether the instance is live (its heartbeat younger than its expiry).
CREATE OR REPLACE VIEW chat_admin_online AS
SELECT i.instance_id, i.started_at, i.heartbeat_at,
       round(extract(epoch FROM now() - i.heartbeat_at)::numeric, 1) AS heartbeat_age_seconds,
       s.user_id, u.user_name,
       NULLIF(s.room_id, 0) AS room_id,          -- NULL: the user's room-list stream
       s.room_id = 0 AS is_user_stream,
       i.heartbeat_at + coalesce(i.expires_after, interval '20 seconds') > now() AS is_live
FROM chat_instances i
LEFT JOIN presence_sessions s USING (instance_id)
LEFT JOIN users u USING (user_id);

INSERT INTO schema_migrations (version) VALUES ('0013') ON CONFLICT DO NOTHING;
