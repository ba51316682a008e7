-- Seeds :rows messages (psql -v rows=1000000) over 10 rooms for the search benchmark:
-- sentences of 4-10 words, about 70 % Korean and 30 % English, from a vocabulary with a
-- few very common words and two rare ones ('무지개떡', 'zebrafish', ~1 in 10,000).
-- The id trigger is bypassed for the bulk load (ids straight from the sequence).
\set ON_ERROR_STOP on
INSERT INTO users (user_id, user_name) VALUES (900000001, '벤치마크') ON CONFLICT DO NOTHING;
INSERT INTO rooms (room_name, room_type, created_by)
SELECT 'bench ' || g, 'group', 900000001 FROM generate_series(1, 10) g;
CREATE TEMP TABLE bench_rooms AS SELECT room_id, row_number() OVER (ORDER BY room_id) - 1 AS n
    FROM rooms WHERE room_name LIKE 'bench %' ORDER BY room_id DESC LIMIT 10;
INSERT INTO room_participants (room_id, user_id) SELECT room_id, 900000001 FROM bench_rooms;

ALTER TABLE messages DISABLE TRIGGER messages_assign_id;
INSERT INTO messages (message_id, room_id, sender_id, message_content, message_type, created_at)
SELECT nextval('messages_message_id_seq'), r.room_id, 900000001,
    (SELECT string_agg(
        CASE
            WHEN random() < 0.0001 THEN (ARRAY['무지개떡', 'zebrafish'])[1 + (random() * 1)::int]
            WHEN random() < 0.7 THEN (ARRAY['안녕하세요', '반갑습니다', '오늘', '내일', '회의', '점심', '저녁', '커피',
                '프로젝트', '일정', '확인', '부탁드립니다', '감사합니다', '김철수가', '박주호', '이영희', '서울', '부산',
                '주말', '여행', '사진', '파일', '공유', '업데이트', '배포', '서버', '데이터베이스', '검색', '테스트',
                '문서', '철수랑', '괜찮아요', '알겠습니다', '잠시만요'])[1 + floor(random() * 34)::int]
            ELSE (ARRAY['hello', 'meeting', 'lunch', 'deploy', 'server', 'database', 'search', 'test', 'review',
                'merge', 'release', 'coffee', 'weekend', 'photo', 'file', 'update', 'please', 'thanks', 'tomorrow',
                'today'])[1 + floor(random() * 20)::int]
        END, ' ')
     FROM generate_series(1, 4 + (g % 7))),
    'text', now() - make_interval(secs => (:rows - g))
FROM generate_series(1, :rows) g
JOIN bench_rooms r ON r.n = g % 10;
ALTER TABLE messages ENABLE TRIGGER messages_assign_id;
ANALYZE messages;
