-- 0007: a direct room created without a name shows each participant the other one's name.
--
-- Apply with `chat-server migrate`, or by hand:  psql -v ON_ERROR_STOP=1 -1 -f sql/0007_direct_room_names.sql
--
-- Before, such a room stored the name of the creator's counterpart, so the other user saw a
-- room named after themself. Now `name_is_default` marks it, and queries show each viewer the
-- current name of the other participant (room_name keeps the creator's view as a fallback).
ALTER TABLE rooms ADD COLUMN name_is_default boolean NOT NULL DEFAULT false;

-- Existing direct rooms whose name is one of their two users' names were, in all likelihood,
-- created without a name.
UPDATE rooms r SET name_is_default = true
WHERE r.room_type = 'direct'
  AND r.room_name IN (SELECT u.user_name FROM users u WHERE u.user_id IN (r.direct_user_low, r.direct_user_high));

INSERT INTO schema_migrations (version) VALUES ('0007') ON CONFLICT DO NOTHING;
