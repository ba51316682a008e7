-- 0012: a removal from a direct room sticks.
--
-- Apply with `chat-server migrate`, or by hand:  psql -v ON_ERROR_STOP=1 -1 -f sql/0012_direct_room_removals.sql
--
-- Creating a direct room that exists reactivates both users in it. A user the other one
-- removed (DELETE .../participants/{user_id}/ by the room's creator) used to undo that by
-- creating the room again; now removed_by records who removed a participant (NULL: they
-- left on their own, or are active), and only that user can bring them back, by creating
-- the direct room again. The removed user's attempt answers 403.

ALTER TABLE room_participants ADD COLUMN removed_by bigint REFERENCES users (user_id);

INSERT INTO schema_migrations (version) VALUES ('0012') ON CONFLICT DO NOTHING;
