-- The analysts' projection of the conversation history into ClickHouse.
--
-- The source of truth is JetStream: every event is stored in the stream CONV_<part>
-- at the stream sequence stream_seq. The projection may insert an event more than
-- once (a re-delivery, or rebuild-history); the copies carry the same (part,
-- stream_seq) and the same sort key, so ReplacingMergeTree(stream_seq) collapses
-- them at merge time. Until a merge has run, read through the *_final views (or with
-- FINAL) to never see a duplicate.
--
-- Written for ClickHouse 18.16 and valid on current versions: no DateTime64
-- (times are milliseconds since the epoch in a UInt64), no Nullable, no COMMENT
-- clauses (hence these SQL comments). `day` is computed by the server from ts
-- in the server's time zone (UTC with scripts/clickhouse.sh); inserts leave it
-- out of their column list.
--
-- Every statement is idempotent (IF NOT EXISTS); Apply runs them in order.
--
-- index_granularity = 1024 (ClickHouse's default is 8192): every read here is a
-- point lookup by the sort key's prefix (a page of ~50 events of one
-- conversation, an analyst's question about one conversation), and a read
-- decodes whole granules of every column in every part it touches; 1024-row
-- granules cut that eightfold for a primary index of 1 mark per 1024 rows
-- (about 10,000 marks, well under a MiB of memory, for 10 M messages).
-- A table created before this setting keeps its granularity (IF NOT EXISTS
-- leaves it alone; `SHOW CREATE TABLE messages` tells). To move an existing
-- deployment: stop every projector, run `messenger rebuild-history --drop`
-- (drops the tables, creates them from this file and projects every
-- conversation stream again from its first event), then start the projectors.
-- History pages stay correct meanwhile: what ClickHouse lacks is read from the
-- streams.

-- One row per event of a conversation, in conversation order (seq): kind 'text' is a
-- message; the membership kinds are here too, and also in the table membership.
CREATE TABLE IF NOT EXISTS messages (
    conv String,          -- conversation id
    seq UInt64,           -- position of the event in its conversation (1, 2, ...)
    ts UInt64,            -- time the platform accepted the event, ms since the epoch (UTC)
    day Date DEFAULT toDate(toDateTime(intDiv(ts, 1000))), -- day of ts; partitions the table
    sender String,        -- user who sent the event (for the membership kinds: who made the change)
    id String,            -- client-chosen message id (deduplication of resends)
    kind String,          -- text, group_created, member_added, member_removed, title_changed
    text String,          -- message text ('' unless kind = 'text')
    title String,         -- group title (group_created, title_changed; '' otherwise)
    user String,          -- user added or removed (member_added, member_removed; '' otherwise)
    members Array(String), -- members listed by the event (those of a group_created; [] when none)
    recipient String,     -- the other member of a direct conversation ('' in groups)
    part UInt16,          -- partition of the JetStream stream: the event is in CONV_<part>
    stream_seq UInt64     -- sequence of the event in CONV_<part>; the version that collapses copies
) ENGINE = ReplacingMergeTree(stream_seq) PARTITION BY toYYYYMM(day) ORDER BY (conv, seq)
    SETTINGS index_granularity = 1024;

-- One row per receipt: a member reports that it has (delivered) or has shown (read)
-- every event of the conversation up to seq: a watermark, not one row per message.
CREATE TABLE IF NOT EXISTS receipts (
    conv String,          -- conversation id
    user String,          -- member who sent the receipt
    seq UInt64,           -- the watermark: events up to this messages.seq are in this status
    status String,        -- delivered, read
    ts UInt64,            -- time the platform accepted the receipt, ms since the epoch (UTC)
    day Date DEFAULT toDate(toDateTime(intDiv(ts, 1000))), -- day of ts; partitions the table
    part UInt16,          -- partition of the JetStream stream: the receipt is in CONV_<part>
    stream_seq UInt64     -- sequence of the receipt in CONV_<part>; the version that collapses copies
) ENGINE = ReplacingMergeTree(stream_seq) PARTITION BY toYYYYMM(day) ORDER BY (conv, user, part, stream_seq)
    SETTINGS index_granularity = 1024;

-- One row per change of a conversation's members or title.
CREATE TABLE IF NOT EXISTS membership (
    conv String,          -- conversation id
    seq UInt64,           -- position of the event in its conversation (as messages.seq)
    ts UInt64,            -- time the platform accepted the event, ms since the epoch (UTC)
    day Date DEFAULT toDate(toDateTime(intDiv(ts, 1000))), -- day of ts; partitions the table
    kind String,          -- group_created, member_added, member_removed, title_changed
    actor String,         -- user who made the change
    user String,          -- user added or removed ('' for group_created, title_changed)
    members Array(String), -- members listed by the event (those of a group_created; [] when none)
    title String,         -- group title (group_created, title_changed; '' otherwise)
    part UInt16,          -- partition of the JetStream stream: the event is in CONV_<part>
    stream_seq UInt64     -- sequence of the event in CONV_<part>; the version that collapses copies
) ENGINE = ReplacingMergeTree(stream_seq) PARTITION BY toYYYYMM(day) ORDER BY (conv, seq)
    SETTINGS index_granularity = 1024;

-- Views for analysts: the same columns, never a duplicate (FINAL collapses the
-- copies that no merge has collapsed yet).
CREATE VIEW IF NOT EXISTS messages_final AS SELECT * FROM messages FINAL;
CREATE VIEW IF NOT EXISTS receipts_final AS SELECT * FROM receipts FINAL;
CREATE VIEW IF NOT EXISTS membership_final AS SELECT * FROM membership FINAL;
