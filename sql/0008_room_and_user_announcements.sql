-- 0008: a room's new name or description reaches its participants' user streams, and a
-- deactivated user's open sockets close.
--
-- Apply with `chat-server migrate`, or by hand:  psql -v ON_ERROR_STOP=1 -1 -f sql/0008_room_and_user_announcements.sql
--
-- There is no API to rename a room yet; operators do it with SQL. Whoever changes the name or
-- description, this trigger announces it (the notice format of sql/0004), and every instance
-- sends `room_updated` with the room's summary to the user streams of its participants.
CREATE FUNCTION chat_announce_room_update() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('chat_events', jsonb_build_array(jsonb_build_object('k', 'room_upd', 'r', NEW.room_id))::text);
    RETURN NULL;
END
$$;

CREATE TRIGGER rooms_announce_update AFTER UPDATE OF room_name, room_description ON rooms
    FOR EACH ROW
    WHEN (OLD.room_name IS DISTINCT FROM NEW.room_name OR OLD.room_description IS DISTINCT FROM NEW.room_description)
    EXECUTE FUNCTION chat_announce_room_update();

-- Deactivating a user (the operator's `UPDATE users SET is_active = false`) is announced, and
-- every instance closes that user's sockets with 4403 at once. (Their REST calls are refused
-- within AUTH_CACHE_MS, their sends at once.)
CREATE FUNCTION chat_announce_user_deactivation() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('chat_events',
        jsonb_build_array(jsonb_build_object('k', 'user_off', 'r', 0, 'u', NEW.user_id))::text);
    RETURN NULL;
END
$$;

CREATE TRIGGER users_announce_deactivation AFTER UPDATE OF is_active ON users
    FOR EACH ROW WHEN (OLD.is_active AND NOT NEW.is_active)
    EXECUTE FUNCTION chat_announce_user_deactivation();

INSERT INTO schema_migrations (version) VALUES ('0008') ON CONFLICT DO NOTHING;
