-- 0004: real-time delivery across instances, and presence.
--
-- Apply with `chat-server migrate`, or by hand:  psql -v ON_ERROR_STOP=1 -1 -f sql/0004_realtime.sql
--
-- How changes reach live clients: every chat-server instance LISTENs on the channel
-- `chat_events`. A notification is only a hint ("room 8 has new messages", "message 42 was
-- deleted"); instances read the facts from the tables. Servers announce their own changes
-- after commit, batched (NOTIFY inside the writing transaction would serialise all writers
-- at commit). Their sessions say so with the setting chat.announces_own_changes = on. Any
-- other session (psql, a batch job) is announced by the triggers below, in its transaction;
-- such changes are rare, so the cost does not matter there.
--
-- Rolling upgrade from a version without real-time: apply this file, then replace the old
-- servers quickly. Until they are gone their writes (lacking the setting) are announced by
-- the triggers inside each transaction, which serialises their commits.

-- The newest message id of each room (maintained by messages_assign_id()), so an instance
-- can cheaply check whether it missed a wake-up for any room it serves.
ALTER TABLE rooms ADD COLUMN last_message_id bigint NOT NULL DEFAULT 0;
UPDATE rooms r SET last_message_id = m.max_id
FROM (SELECT room_id, max(message_id) AS max_id FROM messages GROUP BY room_id) m
WHERE m.room_id = r.room_id;

CREATE OR REPLACE FUNCTION messages_assign_id() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    -- Locks the room row first (until the transaction ends), then takes the id: see 0001.
    PERFORM 1 FROM rooms WHERE room_id = NEW.room_id FOR NO KEY UPDATE;
    NEW.message_id := nextval('messages_message_id_seq');
    UPDATE rooms SET last_message_at = GREATEST(last_message_at, NEW.created_at), last_message_id = NEW.message_id
    WHERE room_id = NEW.room_id;
    RETURN NEW;
END
$$;

-- Announces changes made outside chat-server. Payload: a JSON array of events, as the
-- servers send them: {"k": kind, "r": room_id, "m": message_id, "u": user_id, "n": user_name}.
CREATE FUNCTION chat_announce_external_change() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    event jsonb;
BEGIN
    IF TG_TABLE_NAME = 'messages' THEN
        IF TG_OP = 'INSERT' THEN
            event := jsonb_build_object('k', 'msg', 'r', NEW.room_id);
        ELSIF NEW.is_deleted AND NOT OLD.is_deleted THEN
            event := jsonb_build_object('k', 'del', 'r', NEW.room_id, 'm', NEW.message_id);
        ELSIF NOT NEW.is_deleted AND NEW.message_content IS DISTINCT FROM OLD.message_content THEN
            event := jsonb_build_object('k', 'upd', 'r', NEW.room_id, 'm', NEW.message_id);
        END IF;
    ELSIF TG_TABLE_NAME = 'room_participants' THEN
        IF TG_OP = 'DELETE' THEN
            IF OLD.is_active THEN
                event := jsonb_build_object('k', 'leave', 'r', OLD.room_id, 'u', OLD.user_id,
                    'n', (SELECT user_name FROM users WHERE user_id = OLD.user_id));
            END IF;
        ELSIF NEW.is_active AND (TG_OP = 'INSERT' OR NOT OLD.is_active) THEN
            event := jsonb_build_object('k', 'join', 'r', NEW.room_id, 'u', NEW.user_id,
                'n', (SELECT user_name FROM users WHERE user_id = NEW.user_id));
        ELSIF TG_OP = 'UPDATE' AND OLD.is_active AND NOT NEW.is_active THEN
            event := jsonb_build_object('k', 'leave', 'r', NEW.room_id, 'u', NEW.user_id,
                'n', (SELECT user_name FROM users WHERE user_id = NEW.user_id));
        END IF;
    END IF;
    IF event IS NOT NULL THEN
        PERFORM pg_notify('chat_events', jsonb_build_array(event)::text);
    END IF;
    RETURN NULL;
END
$$;

-- The WHEN clause keeps the servers' own writes from even entering the function.
CREATE TRIGGER messages_announce_external_change AFTER INSERT OR UPDATE ON messages
    FOR EACH ROW WHEN (current_setting('chat.announces_own_changes', true) IS DISTINCT FROM 'on')
    EXECUTE FUNCTION chat_announce_external_change();
CREATE TRIGGER room_participants_announce_external_change AFTER INSERT OR UPDATE OR DELETE ON room_participants
    FOR EACH ROW WHEN (current_setting('chat.announces_own_changes', true) IS DISTINCT FROM 'on')
    EXECUTE FUNCTION chat_announce_external_change();

-- Presence. Each running instance has a row it refreshes (heartbeat_at) every few seconds;
-- an instance whose heartbeat is older than the expiry is dead, and its sessions no longer
-- count. presence_sessions has a row while an instance holds at least one socket of a user
-- on a room (room_id 0: the user stream); a user is online while any live instance holds a row.
CREATE TABLE chat_instances (
    instance_id  text PRIMARY KEY,
    started_at   timestamptz NOT NULL DEFAULT now(),
    heartbeat_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE presence_sessions (
    instance_id text NOT NULL REFERENCES chat_instances (instance_id) ON DELETE CASCADE,
    user_id     bigint NOT NULL REFERENCES users (user_id),
    room_id     bigint NOT NULL,
    PRIMARY KEY (user_id, room_id, instance_id)
);
CREATE INDEX presence_sessions_instance_idx ON presence_sessions (instance_id);

-- When the user's last socket closed (or their instance died); null if never connected.
ALTER TABLE users ADD COLUMN last_seen_at timestamptz;

INSERT INTO schema_migrations (version) VALUES ('0004') ON CONFLICT DO NOTHING;
