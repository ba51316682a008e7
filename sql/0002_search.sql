-- 0002: full-text search over messages, Korean-friendly.
--
-- Words are runs of characters between whitespace and punctuation, lower-cased. Every
-- Hangul run of two or more syllables also contributes its overlapping syllable bigrams,
-- stored with a '~' mark ('김철수가' -> 김철수가, ~김철, ~철수, ~수가), so that a query of two
-- or more syllables can match inside a word ('철수' finds '김철수가') through the same GIN
-- index; the server rechecks such matches against the text. A query word never contains
-- '~' (it is a separator), so prefix queries cannot hit the bigram entries.
-- The server asks chat_search_words() for the words of a query too, so both sides always
-- split and lower-case alike (SearchQuery.swift mirrors the separators for highlights).

CREATE FUNCTION chat_search_words(content text) RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT COALESCE(array_agg(DISTINCT w), '{}')
    FROM regexp_split_to_table(
        lower(COALESCE(content, '')),
        '[\u0001-\u0020\u007F\u0085!-/:-@\[-`{-~\u00A0-\u00BF\u1680\u2000-\u206F\u3000-\u303F\uFF01-\uFF0F\uFF1A-\uFF20]+') AS w
    WHERE w <> '' AND octet_length(w) <= 200
$$;

CREATE FUNCTION chat_hangul_bigrams(words text[]) RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT COALESCE(array_agg(DISTINCT '~' || substr(run.r[1], i, 2)), '{}')
    FROM unnest(words) AS w,
         regexp_matches(w, '[\uAC00-\uD7A3]{2,}', 'g') AS run(r),
         generate_series(1, char_length(run.r[1]) - 1) AS i
$$;

CREATE FUNCTION chat_search_document(content text) RETURNS tsvector
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT array_to_tsvector(words || chat_hangul_bigrams(words))
    FROM (SELECT chat_search_words(content) AS words) AS s
$$;

ALTER TABLE messages
    ADD COLUMN search_document tsvector GENERATED ALWAYS AS (chat_search_document(message_content)) STORED;

CREATE INDEX messages_search_document_idx ON messages USING gin (search_document);

INSERT INTO schema_migrations (version) VALUES ('0002') ON CONFLICT DO NOTHING;
