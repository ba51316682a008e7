-- 0003: lookups of uploaded files by stored name, and the retention job's scan.

-- GET /uploads/{name} finds the message that owns a stored file.
CREATE UNIQUE INDEX messages_file_path_key ON messages (file_path) WHERE file_path IS NOT NULL;

-- Retention deletes a room's messages older than its retention period, oldest first.
CREATE INDEX messages_room_created_idx ON messages (room_id, created_at);

-- Deleting a message sets reply_to_message_id of its replies to NULL: find them by index
-- instead of scanning the table once per deleted message.
CREATE INDEX messages_reply_to_idx ON messages (reply_to_message_id) WHERE reply_to_message_id IS NOT NULL;

-- Rooms that have retention switched on (few), for the retention job.
CREATE INDEX rooms_auto_delete_idx ON rooms (room_id) WHERE auto_delete_enabled AND is_active;

INSERT INTO schema_migrations (version) VALUES ('0003') ON CONFLICT DO NOTHING;
