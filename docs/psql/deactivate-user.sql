-- Deactivate a user (psql -v user_id=42): their sockets close with 4403 and every request
-- of theirs gets 403 within AUTH_CACHE_MS (1 s by default); they can no longer log in.
UPDATE users SET is_active = false, updated_at = now() WHERE user_id = :user_id;
