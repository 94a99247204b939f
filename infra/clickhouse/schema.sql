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
-- (times are milliseconds since the epoch in a UInt64), no Nullable. Every column
-- has a COMMENT (DESCRIBE TABLE and system.columns show it; 18.16 has them):
-- Apply also sets them on tables created before the comments existed, so write
-- them without quotes or backslashes. All times are UTC. `day` is computed by the
-- server from ts, in UTC (tables created before 2026-12-05 compute it in the
-- server's time zone, UTC with scripts/clickhouse.sh); inserts leave it out of
-- their column list.
--
-- Every statement is idempotent (IF NOT EXISTS); Apply runs them in order. One
-- column a line: Apply reads each column's comment from its line.
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
    conv String COMMENT 'conversation id (d... direct, g... group); see conversations',
    seq UInt64 COMMENT 'position of the event in its conversation: 1, 2, ... without gaps',
    ts UInt64 COMMENT 'when the platform accepted the event: milliseconds since 1970-01-01 00:00 UTC',
    day Date DEFAULT toDate(toDateTime(intDiv(ts, 1000)), 'UTC') COMMENT 'UTC date of ts (the server time zone on tables made before 2026-12-05); partitions the table',
    sender String COMMENT 'user who sent the event (for a membership kind: who made the change)',
    id String COMMENT 'client-chosen message id (deduplicates resends)',
    kind String COMMENT 'text, group_created, member_added, member_removed or title_changed',
    text String COMMENT 'message text (empty unless kind is text)',
    title String COMMENT 'group title (group_created, title_changed; empty otherwise)',
    user String COMMENT 'user added or removed (member_added, member_removed; empty otherwise)',
    members Array(String) COMMENT 'members listed by the event (those of a group_created; empty otherwise)',
    recipient String COMMENT 'the other member of a direct conversation (empty in groups)',
    part UInt16 COMMENT 'partition of the JetStream stream: the event is in CONV_<part>',
    stream_seq UInt64 COMMENT 'sequence of the event in CONV_<part>; the version that collapses copies'
) ENGINE = ReplacingMergeTree(stream_seq) PARTITION BY toYYYYMM(day) ORDER BY (conv, seq)
    SETTINGS index_granularity = 1024;

-- One row per receipt: a member reports that it has (delivered) or has shown (read)
-- every event of the conversation up to seq: a watermark, not one row per message.
CREATE TABLE IF NOT EXISTS receipts (
    conv String COMMENT 'conversation id',
    user String COMMENT 'member who sent the receipt',
    seq UInt64 COMMENT 'watermark: every event of conv up to this messages.seq is delivered (or read) to user',
    status String COMMENT 'delivered or read (read implies delivered)',
    ts UInt64 COMMENT 'when the platform accepted the receipt: milliseconds since 1970-01-01 00:00 UTC',
    day Date DEFAULT toDate(toDateTime(intDiv(ts, 1000)), 'UTC') COMMENT 'UTC date of ts (the server time zone on tables made before 2026-12-05); partitions the table',
    part UInt16 COMMENT 'partition of the JetStream stream: the receipt is in CONV_<part>',
    stream_seq UInt64 COMMENT 'sequence of the receipt in CONV_<part>; the version that collapses copies'
) ENGINE = ReplacingMergeTree(stream_seq) PARTITION BY toYYYYMM(day) ORDER BY (conv, user, part, stream_seq)
    SETTINGS index_granularity = 1024;

-- One row per change of a conversation's members or title.
CREATE TABLE IF NOT EXISTS membership (
    conv String COMMENT 'conversation id (a group)',
    seq UInt64 COMMENT 'position of the event in its conversation (as messages.seq)',
    ts UInt64 COMMENT 'when the platform accepted the event: milliseconds since 1970-01-01 00:00 UTC',
    day Date DEFAULT toDate(toDateTime(intDiv(ts, 1000)), 'UTC') COMMENT 'UTC date of ts (the server time zone on tables made before 2026-12-05); partitions the table',
    kind String COMMENT 'group_created, member_added, member_removed or title_changed',
    actor String COMMENT 'user who made the change',
    user String COMMENT 'user added or removed (empty for group_created and title_changed)',
    members Array(String) COMMENT 'members listed by the event (those of a group_created; empty otherwise)',
    title String COMMENT 'group title (group_created, title_changed; empty otherwise)',
    part UInt16 COMMENT 'partition of the JetStream stream: the event is in CONV_<part>',
    stream_seq UInt64 COMMENT 'sequence of the event in CONV_<part>; the version that collapses copies'
) ENGINE = ReplacingMergeTree(stream_seq) PARTITION BY toYYYYMM(day) ORDER BY (conv, seq)
    SETTINGS index_granularity = 1024;

-- One row per conversation as it is now: written by the projector when a direct
-- conversation's first message or a group's membership or title event is
-- projected (a group's row is folded from all its membership rows, so it is the
-- same however often it is written); the row of the highest stream_seq is the
-- current one.
CREATE TABLE IF NOT EXISTS conversations (
    conv String COMMENT 'conversation id (d... direct, g... group), as messages.conv',
    kind String COMMENT 'direct or group',
    title String COMMENT 'group title as of now (empty for direct conversations)',
    creator String COMMENT 'user who created the group, or who sent the first message of a direct conversation',
    created_ts UInt64 COMMENT 'when the conversation began (group_created, or the first direct message): milliseconds since 1970-01-01 00:00 UTC',
    created_seq UInt64 COMMENT 'seq of the event that began the conversation (1)',
    created_day Date DEFAULT toDate(toDateTime(intDiv(created_ts, 1000)), 'UTC') COMMENT 'UTC date of created_ts',
    members Array(String) COMMENT 'members as of now: a group in joining order, a direct conversation its two users sorted',
    updated_ts UInt64 COMMENT 'when the last event that changed this row was accepted: milliseconds since 1970-01-01 00:00 UTC',
    updated_seq UInt64 COMMENT 'seq of the last event that changed this row (membership or title; the first message of a direct conversation)',
    part UInt16 COMMENT 'partition of the JetStream stream: the events of conv are in CONV_<part>',
    stream_seq UInt64 COMMENT 'sequence in CONV_<part> of the event of updated_seq; the version: the highest is the current row'
) ENGINE = ReplacingMergeTree(stream_seq) ORDER BY conv
    SETTINGS index_granularity = 1024;

-- Views for analysts: the same columns, never a duplicate (FINAL collapses the
-- copies that no merge has collapsed yet).
CREATE VIEW IF NOT EXISTS messages_final AS SELECT * FROM messages FINAL;
CREATE VIEW IF NOT EXISTS receipts_final AS SELECT * FROM receipts FINAL;
CREATE VIEW IF NOT EXISTS membership_final AS SELECT * FROM membership FINAL;
CREATE VIEW IF NOT EXISTS conversations_final AS SELECT * FROM conversations FINAL;
