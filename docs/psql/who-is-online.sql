-- Who is online, on which instance, and which instances are alive (heartbeat age, is_live).
SELECT * FROM chat_admin_online ORDER BY instance_id, user_id, room_id;
