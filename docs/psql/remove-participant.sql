-- Take someone out of a room (psql -v room_id=8 -v user_id=42): their sockets on the room
-- close with 4403, the others get participant_left, and they lose access at once.
UPDATE room_participants SET is_active = false, left_at = now()
WHERE room_id = :room_id AND user_id = :user_id AND is_active;
