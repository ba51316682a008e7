-- Soft-delete a message (psql -v message_id=123): the room's sockets get message_deleted,
-- and its content is gone from the database and every API answer.
UPDATE messages SET is_deleted = true, deleted_at = now(), message_content = NULL, updated_at = now()
WHERE message_id = :message_id AND NOT is_deleted;
