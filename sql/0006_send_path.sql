-- 0006: the send path in one statement, for many messages at once.
--
-- Apply with `chat-server migrate`, or by hand:  psql -v ON_ERROR_STOP=1 -1 -f sql/0006_send_path.sql
--
-- Before: a send was a transaction of five round trips (BEGIN, lock the room, check the
-- membership, INSERT, COMMIT), and the room's row stayed locked across all of them and the
-- commit's WAL flush. Now the server calls chat_send_messages() once, outside an explicit
-- transaction, for every send that queued up while its previous call ran ("group commit"):
-- one round trip and one WAL flush for the whole batch, and the room lock lives only inside
-- PostgreSQL, for the few microseconds of the function plus the commit.
--
-- Ordering is unchanged: for each room the function locks the room's row, and only then takes
-- message ids from the sequence; the lock is held until the statement's transaction commits.
-- So within a room, ids still follow commit order ("every message with id > N" never skips a
-- row that commits later), exactly as messages_assign_id() guarantees for other inserts.
-- Batches lock their rooms in ascending room_id order, so two batches (of one instance or of
-- several) cannot deadlock each other.
--
-- Errors of one send never fail the others: every check (room, membership, active sender,
-- reply target, repeated client_message_id) is answered per message as `outcome`, not raised.

-- A server session (chat.announces_own_changes = on) that supplies message_id has already
-- locked the room and taken the id (chat_send_messages below): the trigger is skipped. Any
-- other insert (psql, scripts) still goes through it, whatever message_id it names.
DROP TRIGGER messages_assign_id ON messages;
CREATE TRIGGER messages_assign_id BEFORE INSERT ON messages
    FOR EACH ROW
    WHEN (NEW.message_id IS NULL OR current_setting('chat.announces_own_changes', true) IS DISTINCT FROM 'on')
    EXECUTE FUNCTION messages_assign_id();

-- Sends the i-th message of the arrays (all of equal length) for each i. Returns one row per
-- input, in input order: `ord` (1-based index), `outcome`, and the message (null unless the
-- outcome is 'created' or 'existing'). Outcomes:
--   created          stored now
--   existing         a repeat of (room, sender, client_message_id): the stored message
--   room_not_found   no active room with that id
--   not_participant  the sender is not an active participant (or not an active user)
--   bad_reply        reply_to_message_id is not a message of that room
CREATE FUNCTION chat_send_messages(
    p_room_ids bigint[], p_sender_ids bigint[], p_contents text[], p_types text[],
    p_file_paths text[], p_file_names text[], p_file_sizes bigint[], p_file_content_types text[],
    p_reply_to_ids bigint[], p_client_message_ids text[])
RETURNS TABLE (
    ord integer, outcome text,
    message_id bigint, room_id bigint, sender_id bigint, sender_name text, message_content text,
    message_type text, file_path text, file_name text, file_size bigint, reply_to_message_id bigint,
    client_message_id text, is_edited boolean, is_deleted boolean, edited_at timestamptz,
    created_at timestamptz, updated_at timestamptz)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    n integer := coalesce(array_length(p_room_ids, 1), 0);
    outcomes text[] := array_fill(NULL::text, ARRAY[n]);
    ids bigint[] := array_fill(NULL::bigint, ARRAY[n]);
    i integer;
    current_room bigint;
    room_ok boolean := false;
    room_head bigint;
    new_id bigint;
BEGIN
    FOR i IN SELECT s FROM generate_subscripts(p_room_ids, 1) AS s ORDER BY p_room_ids[s], s LOOP
        IF current_room IS DISTINCT FROM p_room_ids[i] THEN
            IF room_head IS NOT NULL THEN
                UPDATE rooms SET last_message_at = GREATEST(last_message_at, now()), last_message_id = room_head
                WHERE room_id = current_room;
            END IF;
            current_room := p_room_ids[i];
            room_head := NULL;
            PERFORM 1 FROM rooms WHERE room_id = current_room AND is_active FOR NO KEY UPDATE;
            room_ok := FOUND;
        END IF;
        IF NOT room_ok THEN
            outcomes[i] := 'room_not_found';
            CONTINUE;
        END IF;
        -- After the room lock: a removal that committed meanwhile is seen.
        PERFORM 1 FROM room_participants p JOIN users u ON u.user_id = p.user_id
        WHERE p.room_id = current_room AND p.user_id = p_sender_ids[i] AND p.is_active AND u.is_active;
        IF NOT FOUND THEN
            outcomes[i] := 'not_participant';
            CONTINUE;
        END IF;
        IF p_client_message_ids[i] IS NOT NULL THEN
            SELECT m.message_id INTO new_id FROM messages m
            WHERE m.room_id = current_room AND m.sender_id = p_sender_ids[i]
              AND m.client_message_id = p_client_message_ids[i];
            IF FOUND THEN
                outcomes[i] := 'existing';
                ids[i] := new_id;
                CONTINUE;
            END IF;
        END IF;
        IF p_reply_to_ids[i] IS NOT NULL THEN
            PERFORM 1 FROM messages m WHERE m.message_id = p_reply_to_ids[i] AND m.room_id = current_room;
            IF NOT FOUND THEN
                outcomes[i] := 'bad_reply';
                CONTINUE;
            END IF;
        END IF;
        new_id := nextval('messages_message_id_seq');
        INSERT INTO messages (message_id, room_id, sender_id, message_content, message_type, file_path, file_name,
            file_size, file_content_type, reply_to_message_id, client_message_id)
        VALUES (new_id, current_room, p_sender_ids[i], p_contents[i], p_types[i], p_file_paths[i], p_file_names[i],
            p_file_sizes[i], p_file_content_types[i], p_reply_to_ids[i], p_client_message_ids[i]);
        outcomes[i] := 'created';
        ids[i] := new_id;
        room_head := new_id;
    END LOOP;
    IF room_head IS NOT NULL THEN
        UPDATE rooms SET last_message_at = GREATEST(last_message_at, now()), last_message_id = room_head
        WHERE room_id = current_room;
    END IF;
    RETURN QUERY
        SELECT o.ord::integer, o.outcome, m.message_id, m.room_id, m.sender_id, u.user_name, m.message_content,
            m.message_type, m.file_path, m.file_name, m.file_size, m.reply_to_message_id, m.client_message_id,
            m.is_edited, m.is_deleted, m.edited_at, m.created_at, m.updated_at
        FROM unnest(outcomes, ids) WITH ORDINALITY AS o (outcome, id, ord)
        LEFT JOIN messages m ON m.message_id = o.id
        LEFT JOIN users u ON u.user_id = m.sender_id
        ORDER BY o.ord;
END
$$;

INSERT INTO schema_migrations (version) VALUES ('0006') ON CONFLICT DO NOTHING;
