-- 0009: the per-room change sequence (API.md, "Change sequence").
--
-- Apply with `chat-server migrate`, or by hand:  psql -v ON_ERROR_STOP=1 -1 -f sql/0009_change_sequence.sql
--
-- Every change of a room that a client shows gets the room's next number, `seq`:
--   a message created       messages.seq (the message row is its own record)
--   a message edited        a row of room_changes, kind 'message_updated'
--   a message deleted       'message_deleted'
--   a read mark             'message_read' (message_id: the read position)
--   a participant joined    'participant_joined'
--   a participant left      'participant_left'
-- rooms.last_seq is the room's newest number. Like message ids, numbers are taken while the
-- room's row is locked, and the lock is held until the transaction ends, so within a room
-- `seq` follows commit order: reading "every change with seq > N" never skips a change that
-- commits later. That read is both what a socket opened with `last_seq=N` gets first and
-- what every instance does after a wake-up, so a lost NOTIFY costs latency, never an event.
--
-- Whoever makes the change (the API, psql, a batch job), the triggers below record it: the
-- send path alone numbers its messages itself (chat_send_messages), as it takes their ids.
-- Participants added in the transaction that creates their room are its founding members:
-- their rows are not changes (a new room starts at seq 0).
--
-- The log is kept for a window (CHANGE_LOG_RETENTION_DAYS: the retention job calls
-- chat_prune_changes below). room_change_floors holds, per room, the highest number that may
-- be missing from it (no row: nothing is missing); the retention job also raises it when it
-- deletes messages for good. A client whose last_seq is below the floor, or above the room's
-- last_seq, is told to resync. (A table of its own, so that pruning never locks a room row.)

ALTER TABLE rooms ADD COLUMN last_seq bigint NOT NULL DEFAULT 0;

CREATE TABLE room_change_floors (
    room_id   bigint PRIMARY KEY REFERENCES rooms (room_id) ON DELETE CASCADE,
    seq_floor bigint NOT NULL
);

-- Existing messages are numbered in id order (their creations are in the log from now on;
-- their earlier edits, reads and joins are not: replayed messages show their current state).
ALTER TABLE messages ADD COLUMN seq bigint;
SELECT set_config('chat.announces_own_changes', 'on', true);  -- nothing here is news
UPDATE messages m SET seq = n.seq
FROM (SELECT message_id, row_number() OVER (PARTITION BY room_id ORDER BY message_id) AS seq FROM messages) n
WHERE n.message_id = m.message_id;
UPDATE rooms r SET last_seq = n.last_seq
FROM (SELECT room_id, max(seq) AS last_seq FROM messages GROUP BY room_id) n
WHERE n.room_id = r.room_id;
SELECT set_config('chat.announces_own_changes', '', true);
ALTER TABLE messages ALTER COLUMN seq SET NOT NULL;
CREATE UNIQUE INDEX messages_room_seq_key ON messages (room_id, seq);

CREATE TABLE room_changes (
    room_id    bigint NOT NULL REFERENCES rooms (room_id) ON DELETE CASCADE,
    seq        bigint NOT NULL,
    kind       text NOT NULL CHECK (kind IN ('message_updated', 'message_deleted', 'message_read',
                                             'participant_joined', 'participant_left')),
    -- The edited or deleted message; for a read mark, the read position.
    message_id bigint,
    -- The reader, or the participant who joined or left.
    user_id    bigint,
    -- Read marks: the reader's last_read_at, and whether their read receipts were on.
    read_at    timestamptz,
    receipts   boolean,
    changed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (room_id, seq)
);
-- The retention job prunes the log by age.
CREATE INDEX room_changes_changed_at_idx ON room_changes (changed_at);

-- Raises the floor of each room in `p_room_ids` to the highest of its `p_seqs`: changes that a
-- replay can no longer show.
CREATE FUNCTION chat_raise_change_floors(p_room_ids bigint[], p_seqs bigint[]) RETURNS void
LANGUAGE sql AS $$
    INSERT INTO room_change_floors (room_id, seq_floor)
    SELECT c.room_id, max(c.seq) FROM unnest(p_room_ids, p_seqs) AS c (room_id, seq) GROUP BY c.room_id
    ORDER BY c.room_id
    ON CONFLICT (room_id) DO UPDATE SET seq_floor = GREATEST(room_change_floors.seq_floor, EXCLUDED.seq_floor)
$$;

-- Deletes changes recorded before `p_before` (up to `p_limit` of them, oldest first) and
-- raises their rooms' floors. Returns how many went. Run by the retention job; an operator may
-- call it with psql.
CREATE FUNCTION chat_prune_changes(p_before timestamptz, p_limit bigint DEFAULT 10000) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    rooms_gone bigint[];
    seqs_gone bigint[];
BEGIN
    WITH doomed AS (
        SELECT c.room_id, c.seq FROM room_changes c WHERE c.changed_at < p_before ORDER BY c.changed_at LIMIT p_limit
    ),
    gone AS (
        DELETE FROM room_changes c USING doomed d WHERE c.room_id = d.room_id AND c.seq = d.seq
        RETURNING c.room_id, c.seq
    )
    SELECT array_agg(room_id), array_agg(seq) INTO rooms_gone, seqs_gone FROM gone;
    IF rooms_gone IS NULL THEN
        RETURN 0;
    END IF;
    PERFORM chat_raise_change_floors(rooms_gone, seqs_gone);
    RETURN array_length(rooms_gone, 1);
END
$$;

-- Takes the room's next number and records the change (nothing when the room's row is gone:
-- a room being deleted cascades into its participants).
CREATE FUNCTION chat_record_change(
    p_room_id bigint, p_kind text, p_message_id bigint, p_user_id bigint, p_read_at timestamptz, p_receipts boolean)
RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    next_seq bigint;
BEGIN
    UPDATE rooms SET last_seq = last_seq + 1 WHERE room_id = p_room_id RETURNING last_seq INTO next_seq;
    IF next_seq IS NOT NULL THEN
        INSERT INTO room_changes (room_id, seq, kind, message_id, user_id, read_at, receipts)
        VALUES (p_room_id, next_seq, p_kind, p_message_id, p_user_id, p_read_at, p_receipts);
    END IF;
END
$$;

CREATE FUNCTION chat_record_message_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.is_deleted AND NOT OLD.is_deleted THEN
        PERFORM chat_record_change(NEW.room_id, 'message_deleted', NEW.message_id, NULL, NULL, NULL);
    -- An edit through the API always moves edited_at, even to the same text.
    ELSIF NOT NEW.is_deleted AND (NEW.message_content IS DISTINCT FROM OLD.message_content
                                  OR NEW.edited_at IS DISTINCT FROM OLD.edited_at) THEN
        PERFORM chat_record_change(NEW.room_id, 'message_updated', NEW.message_id, NULL, NULL, NULL);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER messages_record_change AFTER UPDATE OF is_deleted, message_content, edited_at ON messages
    FOR EACH ROW EXECUTE FUNCTION chat_record_message_change();

CREATE FUNCTION chat_record_membership_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        IF OLD.is_active THEN
            PERFORM chat_record_change(OLD.room_id, 'participant_left', NULL, OLD.user_id, NULL, NULL);
        END IF;
    ELSIF TG_OP = 'UPDATE' AND OLD.is_active AND NOT NEW.is_active THEN
        PERFORM chat_record_change(NEW.room_id, 'participant_left', NULL, NEW.user_id, NULL, NULL);
    ELSIF NEW.is_active AND (TG_OP = 'INSERT' OR NOT OLD.is_active) THEN
        -- A founding member (the room was created by this transaction: its created_at is this
        -- transaction's start) did not join a room.
        IF NOT EXISTS (SELECT 1 FROM rooms WHERE room_id = NEW.room_id AND created_at = now()) THEN
            PERFORM chat_record_change(NEW.room_id, 'participant_joined', NULL, NEW.user_id, NULL, NULL);
        END IF;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER room_participants_record_membership AFTER INSERT OR DELETE OR UPDATE OF is_active ON room_participants
    FOR EACH ROW EXECUTE FUNCTION chat_record_membership_change();

-- Every read mark is a change, even one that moves nothing (as the API announces it).
CREATE FUNCTION chat_record_read() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM chat_record_change(NEW.room_id, 'message_read', NEW.last_read_message_id, NEW.user_id,
        NEW.last_read_at, NEW.read_receipt_enabled);
    RETURN NULL;
END
$$;

CREATE TRIGGER room_participants_record_read AFTER UPDATE OF last_read_at, last_read_message_id ON room_participants
    FOR EACH ROW WHEN (OLD.is_active AND NEW.is_active)
    EXECUTE FUNCTION chat_record_read();

-- Messages inserted outside the send path (psql, scripts) are numbered as they get their id.
CREATE OR REPLACE FUNCTION messages_assign_id() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    -- Locks the room row first (until the transaction ends), then takes the id: see 0001.
    PERFORM 1 FROM rooms WHERE room_id = NEW.room_id FOR NO KEY UPDATE;
    NEW.message_id := nextval('messages_message_id_seq');
    UPDATE rooms SET last_message_at = GREATEST(last_message_at, NEW.created_at), last_message_id = NEW.message_id,
        last_seq = last_seq + 1
    WHERE room_id = NEW.room_id
    RETURNING last_seq INTO NEW.seq;
    RETURN NEW;
END
$$;

-- The send path (sql/0006) numbers its messages: as 0006, plus `seq` taken with the id.
DROP FUNCTION chat_send_messages(bigint[], bigint[], text[], text[], text[], text[], bigint[], text[], bigint[],
    text[], boolean);
CREATE FUNCTION chat_send_messages(
    p_room_ids bigint[], p_sender_ids bigint[], p_contents text[], p_types text[],
    p_file_paths text[], p_file_names text[], p_file_sizes bigint[], p_file_content_types text[],
    p_reply_to_ids bigint[], p_client_message_ids text[], p_announce boolean)
RETURNS TABLE (
    ord integer, outcome text,
    message_id bigint, room_id bigint, sender_id bigint, sender_name text, message_content text,
    message_type text, file_path text, file_name text, file_size bigint, reply_to_message_id bigint,
    client_message_id text, is_edited boolean, is_deleted boolean, edited_at timestamptz,
    created_at timestamptz, updated_at timestamptz, seq bigint)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    n integer := coalesce(array_length(p_room_ids, 1), 0);
    outcomes text[] := array_fill(NULL::text, ARRAY[n]);
    ids bigint[] := array_fill(NULL::bigint, ARRAY[n]);
    names text[] := array_fill(NULL::text, ARRAY[n]);
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
    found_id bigint;
    sender text;
BEGIN
    FOR i IN SELECT s FROM generate_subscripts(p_room_ids, 1) AS s ORDER BY p_room_ids[s], s LOOP
        IF current_room IS DISTINCT FROM p_room_ids[i] THEN
            current_room := p_room_ids[i];
            room_seq := NULL;
            SELECT r.last_seq INTO room_seq FROM rooms r WHERE r.room_id = current_room AND r.is_active
            FOR NO KEY UPDATE;
        END IF;
        IF room_seq IS NULL THEN
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
        -- The id and the number are taken while the room is locked (see above).
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

    RETURN QUERY
        WITH inserted AS (
            INSERT INTO messages (message_id, room_id, sender_id, message_content, message_type, file_path,
                file_name, file_size, file_content_type, reply_to_message_id, client_message_id, search_document, seq)
            SELECT q.id, p_room_ids[q.o], p_sender_ids[q.o], p_contents[q.o], p_types[q.o], p_file_paths[q.o],
                p_file_names[q.o], p_file_sizes[q.o], p_file_content_types[q.o], p_reply_to_ids[q.o],
                p_client_message_ids[q.o], chat_search_document(p_contents[q.o]), q.seq
            FROM unnest(new_ords, new_ids, new_seqs) AS q (o, id, seq)
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
            m.is_edited, m.is_deleted, m.edited_at, m.created_at, m.updated_at, m.seq
        FROM answers a LEFT JOIN stored m ON m.message_id = a.id;
END
$$;

INSERT INTO schema_migrations (version) VALUES ('0009') ON CONFLICT DO NOTHING;
