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
-- input (in no particular order): `ord` (its 1-based index), `outcome`, and the message (null unless
-- the outcome is 'created' or 'existing'). Outcomes:
--   created          stored now
--   existing         a repeat of (room, sender, client_message_id), stored before or earlier
--                    in the same batch: that message
--   room_not_found   no active room with that id
--   not_participant  the sender is not an active participant (or not an active user)
--   bad_reply        reply_to_message_id is not a message of that room
-- The checks and the ids happen per message in the loop; then each room's head is updated
-- once, and one INSERT stores the rows (with their search documents) and returns the answers.
CREATE FUNCTION chat_send_messages(
    p_room_ids bigint[], p_sender_ids bigint[], p_contents text[], p_types text[],
    p_file_paths text[], p_file_names text[], p_file_sizes bigint[], p_file_content_types text[],
    p_reply_to_ids bigint[], p_client_message_ids text[], p_announce boolean)
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
    names text[] := array_fill(NULL::text, ARRAY[n]);
    -- The messages to insert: input index and id.
    new_ords integer[] := '{}';
    new_ids bigint[] := '{}';
    -- Each room that got messages, and its newest id.
    head_rooms bigint[] := '{}';
    head_ids bigint[] := '{}';
    i integer;
    j integer;
    current_room bigint;
    room_ok boolean := false;
    found_id bigint;
    sender text;
BEGIN
    FOR i IN SELECT s FROM generate_subscripts(p_room_ids, 1) AS s ORDER BY p_room_ids[s], s LOOP
        IF current_room IS DISTINCT FROM p_room_ids[i] THEN
            current_room := p_room_ids[i];
            PERFORM 1 FROM rooms WHERE room_id = current_room AND is_active FOR NO KEY UPDATE;
            room_ok := FOUND;
        END IF;
        IF NOT room_ok THEN
            outcomes[i] := 'room_not_found';
            CONTINUE;
        END IF;
        -- After the room lock: a removal that committed meanwhile is seen.
        SELECT u.user_name INTO sender FROM room_participants p JOIN users u ON u.user_id = p.user_id
        WHERE p.room_id = current_room AND p.user_id = p_sender_ids[i] AND p.is_active AND u.is_active;
        IF NOT FOUND THEN
            outcomes[i] := 'not_participant';
            CONTINUE;
        END IF;
        names[i] := sender;
        IF p_client_message_ids[i] IS NOT NULL THEN
            found_id := NULL;
            -- Earlier in this batch (same room, so among the messages queued since its lock)...
            FOR j IN SELECT unnest(new_ords) LOOP
                IF p_room_ids[j] = current_room AND p_sender_ids[j] = p_sender_ids[i]
                   AND p_client_message_ids[j] = p_client_message_ids[i] THEN
                    found_id := ids[j];
                END IF;
            END LOOP;
            -- ... or stored before.
            IF found_id IS NULL THEN
                SELECT x.message_id INTO found_id FROM messages x
                WHERE x.room_id = current_room AND x.sender_id = p_sender_ids[i]
                  AND x.client_message_id = p_client_message_ids[i];
            END IF;
            IF found_id IS NOT NULL THEN
                outcomes[i] := 'existing';
                ids[i] := found_id;
                CONTINUE;
            END IF;
        END IF;
        IF p_reply_to_ids[i] IS NOT NULL THEN
            PERFORM 1 FROM messages x WHERE x.message_id = p_reply_to_ids[i] AND x.room_id = current_room;
            IF NOT FOUND THEN
                outcomes[i] := 'bad_reply';
                CONTINUE;
            END IF;
        END IF;
        -- The id is taken while the room is locked (see above).
        outcomes[i] := 'created';
        ids[i] := nextval('messages_message_id_seq');
        new_ords := new_ords || i;
        new_ids := new_ids || ids[i];
        IF head_rooms[array_length(head_rooms, 1)] IS DISTINCT FROM current_room THEN
            head_rooms := head_rooms || current_room;
            head_ids := head_ids || ids[i];
        ELSE
            head_ids[array_length(head_ids, 1)] := ids[i];
        END IF;
    END LOOP;

    UPDATE rooms r SET last_message_at = GREATEST(r.last_message_at, now()), last_message_id = h.id
    FROM unnest(head_rooms, head_ids) AS h (room, id)
    WHERE r.room_id = h.room;

    -- One wake-up per batch for every instance ("these rooms have new messages", the notices
    -- of sql/0004), delivered when the batch commits. A NOTIFY holds PostgreSQL's notify lock
    -- through its transaction's WAL flush, but here one transaction carries a whole batch, and
    -- the wake-up leaves at commit instead of a round trip later.
    IF p_announce AND array_length(head_rooms, 1) > 0 THEN
        PERFORM pg_notify('chat_events',
            (SELECT json_agg(json_build_object('k', 'msg', 'r', h))::text FROM unnest(head_rooms) AS h));
    END IF;

    -- One statement inserts the batch and returns every answer. A repeat found earlier in the
    -- batch is among `inserted` (this statement's snapshot does not see those rows in the table).
    RETURN QUERY
        WITH inserted AS (
            INSERT INTO messages (message_id, room_id, sender_id, message_content, message_type, file_path,
                file_name, file_size, file_content_type, reply_to_message_id, client_message_id, search_document)
            SELECT q.id, p_room_ids[q.o], p_sender_ids[q.o], p_contents[q.o], p_types[q.o], p_file_paths[q.o],
                p_file_names[q.o], p_file_sizes[q.o], p_file_content_types[q.o], p_reply_to_ids[q.o],
                p_client_message_ids[q.o], chat_search_document(p_contents[q.o])
            FROM unnest(new_ords, new_ids) AS q (o, id)
            RETURNING *
        ),
        answers AS (
            SELECT a.ord::integer AS ord, a.outcome, a.id FROM unnest(outcomes, ids) WITH ORDINALITY AS a (outcome, id, ord)
        ),
        stored AS (
            SELECT * FROM inserted
            UNION ALL
            SELECT x.* FROM messages x
            WHERE x.message_id = ANY (SELECT a.id FROM answers a WHERE a.outcome = 'existing')
        )
        SELECT a.ord, a.outcome, m.message_id, m.room_id, m.sender_id, names[a.ord], m.message_content,
            m.message_type, m.file_path, m.file_name, m.file_size, m.reply_to_message_id, m.client_message_id,
            m.is_edited, m.is_deleted, m.edited_at, m.created_at, m.updated_at
        FROM answers a LEFT JOIN stored m ON m.message_id = a.id;
END
$$;

-- The search document of a message without two adjacent Hangul syllables has no bigrams:
-- skip the character-by-character scan for it (same results, a third of the cost of an
-- insert's document for Latin text).
CREATE OR REPLACE FUNCTION chat_search_document(content text) RETURNS tsvector
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT array_to_tsvector(chat_search_words(content) ||
        CASE WHEN content ~ '[가-힣][가-힣]' THEN chat_hangul_bigrams(content) ELSE '{}'::text[] END)
$$;

-- The search document stops being a generated column: PostgreSQL prepares a stored generated
-- column's expression again at the start of every INSERT or UPDATE statement (parsing the
-- SQL function bodies it inlines), which cost as much as inserting the row. The send path now
-- computes it in its own INSERT (a cached plan), and triggers keep it right for every other
-- writer: an INSERT that leaves it NULL, and any change of message_content (edits, deletes,
-- psql). Existing values stay as they are: the same function computed them.
ALTER TABLE messages ALTER COLUMN search_document DROP EXPRESSION;

CREATE FUNCTION messages_set_search_document() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.search_document := chat_search_document(NEW.message_content);
    RETURN NEW;
END
$$;

CREATE TRIGGER messages_search_document_on_insert BEFORE INSERT ON messages
    FOR EACH ROW
    WHEN (NEW.search_document IS NULL OR current_setting('chat.announces_own_changes', true) IS DISTINCT FROM 'on')
    EXECUTE FUNCTION messages_set_search_document();
CREATE TRIGGER messages_search_document_on_update BEFORE UPDATE OF message_content, search_document ON messages
    FOR EACH ROW EXECUTE FUNCTION messages_set_search_document();

-- client_message_id is optional: index only the rows that have one (a send without one
-- then updates one index fewer). Same uniqueness: NULLs never conflicted.
ALTER TABLE messages DROP CONSTRAINT messages_client_message_id_key;
CREATE UNIQUE INDEX messages_client_message_id_key ON messages (room_id, sender_id, client_message_id)
    WHERE client_message_id IS NOT NULL;

INSERT INTO schema_migrations (version) VALUES ('0006') ON CONFLICT DO NOTHING;
