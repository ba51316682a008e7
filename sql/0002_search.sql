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

-- Overlapping pairs of Hangul syllables (U+AC00..U+D7A3), marked with '~'. Written as a
-- scan of two-character substrings compared in code-point order (COLLATE "C"): about eight
-- times faster than matching Hangul runs with regexp_matches.
CREATE FUNCTION chat_hangul_bigrams(content text) RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT COALESCE(array_agg(DISTINCT '~' || pair), '{}')
    FROM (SELECT substr(content, i, 2) AS pair
          FROM generate_series(1, char_length(content) - 1) AS i) AS pairs
    WHERE substr(pair, 1, 1) COLLATE "C" BETWEEN '가' AND '힣'
      AND substr(pair, 2, 1) COLLATE "C" BETWEEN '가' AND '힣'
$$;

CREATE FUNCTION chat_search_document(content text) RETURNS tsvector
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT array_to_tsvector(chat_search_words(content) || chat_hangul_bigrams(COALESCE(content, '')))
$$;

ALTER TABLE messages
    ADD COLUMN search_document tsvector GENERATED ALWAYS AS (chat_search_document(message_content)) STORED;

CREATE INDEX messages_search_document_idx ON messages USING gin (search_document);

INSERT INTO schema_migrations (version) VALUES ('0002') ON CONFLICT DO NOTHING;
