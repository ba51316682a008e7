-- The newest rooms with their member and message counts.
SELECT * FROM chat_admin_rooms ORDER BY room_id DESC LIMIT 20;
