-- Find users by name (psql -v name='%kim%'): registered or from tokens, active, online.
SELECT * FROM chat_admin_users WHERE user_name ILIKE :'name' ORDER BY user_id;
