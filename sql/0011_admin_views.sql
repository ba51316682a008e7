-- 0011: views for operators working with psql (README, "Administration with psql"; the
-- recipes in docs/psql/ use them and are tested against a running server).
--
-- Apply with `chat-server migrate`, or by hand:  psql -v ON_ERROR_STOP=1 -1 -f sql/0011_admin_views.sql
--
-- Read-only: change things through the tables (users, room_participants, messages), as the
-- recipes do; the server sees such changes as it sees its own.

-- Every user: registered (a password account) or known from a token, active or not, how
-- many rooms they are in, and whether a live instance holds a socket of theirs. A live
-- instance is one whose heartbeat is younger than PRESENCE_EXPIRY_SECONDS (default 20 s;
-- the view assumes the default).
CREATE VIEW chat_admin_users AS
SELECT u.user_id, u.user_name, u.is_active,
       u.password_hash IS NOT NULL AS is_registered,
       (SELECT count(*) FROM room_participants p WHERE p.user_id = u.user_id AND p.is_active) AS rooms,
       EXISTS (
           SELECT 1 FROM presence_sessions s JOIN chat_instances i USING (instance_id)
           WHERE s.user_id = u.user_id AND i.heartbeat_at > now() - interval '20 seconds'
       ) AS is_online,
       u.last_seen_at, u.created_at
FROM users u;

-- Every room with its active members, messages (not deleted) and newest activity.
CREATE VIEW chat_admin_rooms AS
SELECT r.room_id, r.room_name, r.room_type, r.is_active, r.max_participants,
       (SELECT count(*) FROM room_participants p WHERE p.room_id = r.room_id AND p.is_active) AS members,
       (SELECT count(*) FROM messages m WHERE m.room_id = r.room_id AND NOT m.is_deleted) AS messages,
       r.last_message_at, r.created_by, r.created_at
FROM rooms r;

-- Who is online on which instance, with each instance's heartbeat age (an instance whose
-- heartbeat is older than PRESENCE_EXPIRY_SECONDS is dead: its rows no longer count).
CREATE VIEW chat_admin_online AS
SELECT i.instance_id, i.started_at, i.heartbeat_at,
       round(extract(epoch FROM now() - i.heartbeat_at)::numeric, 1) AS heartbeat_age_seconds,
       s.user_id, u.user_name,
       NULLIF(s.room_id, 0) AS room_id,          -- NULL: the user's room-list stream
       s.room_id = 0 AS is_user_stream
FROM chat_instances i
LEFT JOIN presence_sessions s USING (instance_id)
LEFT JOIN users u USING (user_id);

INSERT INTO schema_migrations (version) VALUES ('0011') ON CONFLICT DO NOTHING;
