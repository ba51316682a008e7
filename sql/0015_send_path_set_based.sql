-- 0015: chat_send_messages does its checks per batch, not per message, and plans once.
--
-- Apply with `chat-server migrate`, or by hand:  psql -v ON_ERROR_STOP=1 -1 -f sql/0015_send_path_set_based.sql
--
-- Measured with callgrind on the function alone (Benchmarks/README.md, "fourth session"):
-- a 14-message call takes 19 % fewer instructions than 0014's, a one-message call 5 % fewer.
-- 1. Every statement of a PL/pgSQL function costs an executor start and end. 0014 ran one
--    locking SELECT per room and one membership SELECT per message: for a batch of 14
--    messages in 12 rooms, 26 statements. Now one statement locks every room of the batch
--    (ascending room_id, as before, so that batches cannot deadlock each other) and one
--    reads every sender's membership, after the locks (so a removal that committed before
--    a room was locked is seen, as before).
-- 2. The statements that read the batch's arrays (unnest) can be planned again on every
--    call: unnest's row estimate follows the array, so the plan cache may keep choosing a
--    custom plan over the cached generic one. Without the setting below, a one-message call
--    of this function took 11 % more instructions than 0014's.
--    `plan_cache_mode = force_generic_plan` for this function only makes them plan once per
--    session (and again when ANALYZE changes a table's statistics). On tables of any real
--    size each generic plan probes rooms, room_participants and messages by index, whatever
--    the batch size (checked with EXPLAIN at 200,000 rooms and 600,000 memberships).
-- Everything else (ordering, SKIP LOCKED and the waiting lane, outcomes, answers, the wake-up)
-- is as in 0014, which explains it.
CREATE OR REPLACE FUNCTION chat_send_messages(
    p_room_ids bigint[], p_sender_ids bigint[], p_contents text[], p_types text[],
    p_file_paths text[], p_file_names text[], p_file_sizes bigint[], p_file_content_types text[],
    p_reply_to_ids bigint[], p_client_message_ids text[], p_search_documents text[], p_announce boolean,
    p_wait boolean DEFAULT true)
RETURNS TABLE (
    ord integer, outcome text,
    message_id bigint, room_id bigint, sender_id bigint, sender_name text, message_content text,
    message_type text, file_path text, file_name text, file_size bigint, reply_to_message_id bigint,
    client_message_id text, is_edited boolean, is_deleted boolean, edited_at timestamptz,
    created_at timestamptz, updated_at timestamptz, seq bigint)
LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan
AS $$
#variable_conflict use_column
DECLARE
    n integer := coalesce(array_length(p_room_ids, 1), 0);
    outcomes text[] := array_fill(NULL::text, ARRAY[n]);
    ids bigint[] := array_fill(NULL::bigint, ARRAY[n]);
    -- Each sender's name when it is an active participant of the message's room, else NULL.
    names text[];
    -- The rooms this call locked, and their last_seq (in the same order).
    locked_rooms bigint[];
    locked_seqs bigint[];
    -- The messages to insert: input index, id and number.
    new_ords integer[] := '{}';
    new_ids bigint[] := '{}';
    new_seqs bigint[] := '{}';
    -- Each room that got messages, and its newest id and number.
    head_rooms bigint[] := '{}';
    head_ids bigint[] := '{}';
    head_seqs bigint[] := '{}';
    i integer;
    j integer;
    current_room bigint;
    room_seq bigint;
    room_busy boolean;
    found_id bigint;
BEGIN
    -- The rooms' locks, in ascending room_id order: the rows are locked as the sorted scan
    -- returns them. Without p_wait a room locked by another transaction is skipped.
    IF p_wait THEN
        SELECT array_agg(r.room_id), array_agg(r.last_seq) INTO locked_rooms, locked_seqs
        FROM (SELECT r.room_id, r.last_seq FROM rooms r WHERE r.room_id = ANY (p_room_ids) AND r.is_active
              ORDER BY r.room_id FOR NO KEY UPDATE) r;
    ELSE
        SELECT array_agg(r.room_id), array_agg(r.last_seq) INTO locked_rooms, locked_seqs
        FROM (SELECT r.room_id, r.last_seq FROM rooms r WHERE r.room_id = ANY (p_room_ids) AND r.is_active
              ORDER BY r.room_id FOR NO KEY UPDATE SKIP LOCKED) r;
    END IF;

    -- After the locks: a removal that committed meanwhile is seen.
    names := ARRAY(
        SELECT u.user_name
        FROM unnest(p_room_ids, p_sender_ids) WITH ORDINALITY AS m (room, sender, o)
        LEFT JOIN room_participants p ON p.room_id = m.room AND p.user_id = m.sender AND p.is_active
        LEFT JOIN users u ON u.user_id = p.user_id AND u.is_active
        ORDER BY m.o);

    FOR i IN SELECT s FROM generate_subscripts(p_room_ids, 1) AS s ORDER BY p_room_ids[s], s LOOP
        IF current_room IS DISTINCT FROM p_room_ids[i] THEN
            current_room := p_room_ids[i];
            j := array_position(locked_rooms, current_room);
            room_seq := locked_seqs[j];
            room_busy := false;
            -- Not locked here: another transaction holds it (an active room), or not found.
            IF j IS NULL AND NOT p_wait THEN
                room_busy := EXISTS (SELECT 1 FROM rooms r WHERE r.room_id = current_room AND r.is_active);
            END IF;
        END IF;
        IF room_busy THEN
            outcomes[i] := 'room_busy';
            CONTINUE;
        END IF;
        IF room_seq IS NULL THEN
            outcomes[i] := 'room_not_found';
            CONTINUE;
        END IF;
        IF names[i] IS NULL THEN
            outcomes[i] := 'not_participant';
            CONTINUE;
        END IF;
        IF p_client_message_ids[i] IS NOT NULL THEN
            found_id := NULL;
            -- Earlier in this batch (same room, so among the messages queued since its lock)...
            FOREACH j IN ARRAY new_ords LOOP
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
        -- The id and the number are taken while the room is locked (see 0006).
        outcomes[i] := 'created';
        ids[i] := nextval('messages_message_id_seq');
        room_seq := room_seq + 1;
        new_ords := new_ords || i;
        new_ids := new_ids || ids[i];
        new_seqs := new_seqs || room_seq;
        IF head_rooms[array_length(head_rooms, 1)] IS DISTINCT FROM current_room THEN
            head_rooms := head_rooms || current_room;
            head_ids := head_ids || ids[i];
            head_seqs := head_seqs || room_seq;
        ELSE
            head_ids[array_length(head_ids, 1)] := ids[i];
            head_seqs[array_length(head_seqs, 1)] := room_seq;
        END IF;
    END LOOP;

    UPDATE rooms r SET last_message_at = GREATEST(r.last_message_at, now()), last_message_id = h.id, last_seq = h.seq
    FROM unnest(head_rooms, head_ids, head_seqs) AS h (room, id, seq)
    WHERE r.room_id = h.room;

    -- One wake-up per batch for every instance (see sql/0006).
    IF p_announce AND array_length(head_rooms, 1) > 0 THEN
        PERFORM pg_notify('chat_events',
            (SELECT json_agg(json_build_object('k', 'msg', 'r', h))::text FROM unnest(head_rooms) AS h));
    END IF;

    -- The new rows answer for themselves; `ids` says whose each is (an id taken here is in it
    -- once, or again after it for a repeat of it later in the batch: the first is its own).
    RETURN QUERY
        INSERT INTO messages AS m (message_id, room_id, sender_id, message_content, message_type, file_path,
            file_name, file_size, file_content_type, reply_to_message_id, client_message_id, search_document, seq)
        SELECT q.id, p_room_ids[q.o], p_sender_ids[q.o], p_contents[q.o], p_types[q.o], p_file_paths[q.o],
            p_file_names[q.o], p_file_sizes[q.o], p_file_content_types[q.o], p_reply_to_ids[q.o],
            p_client_message_ids[q.o],
            COALESCE(p_search_documents[q.o]::tsvector, chat_search_document(p_contents[q.o])), q.seq
        FROM unnest(new_ords, new_ids, new_seqs) AS q (o, id, seq)
        RETURNING array_position(ids, m.message_id), 'created'::text, m.message_id, m.room_id, m.sender_id,
            names[array_position(ids, m.message_id)], m.message_content, m.message_type, m.file_path, m.file_name,
            m.file_size, m.reply_to_message_id, m.client_message_id, m.is_edited, m.is_deleted, m.edited_at,
            m.created_at, m.updated_at, m.seq;

    -- The rest (rare): repeats, with the message they repeat, and refusals.
    IF coalesce(array_length(new_ords, 1), 0) < n THEN
        RETURN QUERY
            SELECT a.ord::integer, a.outcome, x.message_id, x.room_id, x.sender_id, names[a.ord], x.message_content,
                x.message_type, x.file_path, x.file_name, x.file_size, x.reply_to_message_id, x.client_message_id,
                x.is_edited, x.is_deleted, x.edited_at, x.created_at, x.updated_at, x.seq
            FROM unnest(outcomes, ids) WITH ORDINALITY AS a (outcome, id, ord)
            LEFT JOIN messages x ON x.message_id = a.id AND a.outcome = 'existing'
            WHERE a.outcome <> 'created';
    END IF;
END
$$;

INSERT INTO schema_migrations (version) VALUES ('0015') ON CONFLICT DO NOTHING;
