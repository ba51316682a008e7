-- 0010: registration ids that token contents cannot exhaust, and login names unique up to
-- case and compatibility forms.
--
-- Apply with `chat-server migrate`, or by hand:  psql -v ON_ERROR_STOP=1 -1 -f sql/0010_user_ids_and_login_names.sql
--
-- User ids. A token's `sub` is the user id (API.md), and a user first seen in a token is
-- created with exactly that id. Until now registrations drew ids from the column's identity
-- sequence and, on colliding with such an id, moved the sequence past max(user_id): one
-- validly signed token with sub = 9223372036854775807 ended registration for good. Now
-- registrations draw from `chat_user_ids` through chat_next_user_id(), which skips only the
-- run of taken ids right at the sequence's position, never jumps to an id a token chose.
-- (Whoever holds JWT_SECRET can sign a token for any id, registered accounts included: a
-- service sharing the secret is trusted with every account. The README says how an operator
-- links an external identity to an existing account.)

ALTER TABLE users ALTER COLUMN user_id DROP IDENTITY IF EXISTS;

CREATE SEQUENCE chat_user_ids AS bigint MINVALUE 1 OWNED BY users.user_id;
-- Registered accounts got their ids from the old sequence; token users may hold any id.
SELECT setval('chat_user_ids', COALESCE((SELECT max(user_id) FROM users WHERE password_hash IS NOT NULL), 0) + 1, false);

-- The next id for a registration: the sequence's next value, or, when a token user holds it,
-- the first free id after the run of taken ids starting there.
CREATE FUNCTION chat_next_user_id() RETURNS bigint
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    candidate bigint;
    run_end   bigint;
BEGIN
    LOOP
        candidate := nextval('chat_user_ids');
        IF NOT EXISTS (SELECT 1 FROM users WHERE user_id = candidate) THEN
            RETURN candidate;
        END IF;
        -- The last id of the run of taken ids from candidate on (CASE: no overflow at the top).
        SELECT min(u.user_id) INTO run_end FROM users u
        WHERE u.user_id >= candidate
          AND CASE WHEN u.user_id = 9223372036854775807 THEN true
                   ELSE NOT EXISTS (SELECT 1 FROM users v WHERE v.user_id = u.user_id + 1) END;
        IF run_end = 9223372036854775807 THEN
            RAISE EXCEPTION 'no user id is left above %', candidate USING ERRCODE = 'sequence_generator_limit_exceeded';
        END IF;
        PERFORM setval('chat_user_ids', run_end);
    END LOOP;
END
$$;

ALTER TABLE users ALTER COLUMN user_id SET DEFAULT chat_next_user_id();

-- Login names. Two accounts whose names differ only by case or by compatibility forms
-- (fullwidth "ａｌｉｃｅ", "ﬁ" ligatures, circled letters) would look the same to people: the
-- key below holds the NFKC form, lower-cased, of every account's name. (The server also
-- refuses control and bidi characters and names mixing Latin, Greek and Cyrillic letters.)
-- Existing clashes stop the migration with the names to resolve first.
DO $$
DECLARE
    clashes text;
BEGIN
    SELECT string_agg(names, '; ') INTO clashes FROM (
        SELECT string_agg(format('%s (user_id %s)', user_name, user_id), ', ' ORDER BY user_id) AS names
        FROM users WHERE password_hash IS NOT NULL
        GROUP BY lower(normalize(user_name, NFKC)) HAVING count(*) > 1
    ) AS c;
    IF clashes IS NOT NULL THEN
        RAISE EXCEPTION 'login names that differ only by case or compatibility forms: %', clashes
            USING HINT = 'Rename all but one of each group (UPDATE users SET user_name = ... WHERE user_id = ...), then migrate again.';
    END IF;
END
$$;

CREATE UNIQUE INDEX users_login_key ON users (lower(normalize(user_name, NFKC))) WHERE password_hash IS NOT NULL;

INSERT INTO schema_migrations (version) VALUES ('0010') ON CONFLICT DO NOTHING;
