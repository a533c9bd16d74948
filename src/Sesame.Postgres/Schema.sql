-- Sesame's PostgreSQL schema, version 1: the tables and functions of one session store.
--
-- __schema__ and __table__ stand for the schema and table name the app chose (lower-case letters,
-- digits and underscores; PostgresStore.SchemaScript fills them in). Run it once, in one transaction;
-- it records version 1 in __table___version so that a later Sesame can tell what to migrate. Its part
-- from the "-- Functions." line may run again (see there).
--
-- Layout: a session is one row of __table__ (its id, user, size, last seen, expiry) and one row of
-- __table___nodes per node of its JSON trees, so a commit that changes one key writes one node row
-- (and slides the session row), not the whole session. jsonb would not keep the text Sesame promises
-- to keep: it rewrites numbers written with an exponent (1e3 becomes 1000, 1e400 a 401-digit integer)
-- and orders keys by length (shorter first). Sesame keeps every leaf as its exact compact JSON text,
-- and key order in the object's own node.
--
-- A node's path (COLLATE "C", so it sorts by bytes) is its segments one after another: a key as \x01
-- followed by the key (escaped so that it holds no character below U+0020 and no backslash other than
-- its \xxxx escapes), an index as \x02 followed by its decimal digits. The session's tree (its data) is
-- rooted at the empty path, the facts Sesame keeps beside it at \x04. So the nodes below path P are
-- exactly those with P < path < P || \x03, one range of the primary key.
-- A node's value is
--   a leaf's exact compact JSON text (null, true, false, a number, a string, [] or {}), or
--   'A' || n for an array of n >= 1 items (its items are the nodes P || \x02 || 0 .. n-1), or
--   'O' || (\x01 || key) for each member, in the object's order, for an object of one or more members.
-- A node's bytes are what it adds to the tree's compact JSON besides its children: a leaf its text's
-- UTF-8 length, an array of n items n + 1 (brackets and commas), an object 2 + (members - 1) + the
-- bytes of each "key": (the key's escaped JSON text, its quotes and the colon). The sum over a tree is
-- the tree's size in bytes of compact JSON, exactly as Sesame's JsonSize counts it; the session row
-- keeps the data tree's sum, updated by every commit, so the size limit is checked before anything is
-- acknowledged.
--
-- Times are Unix milliseconds of the database server's clock. expires_at is exact and not indexed, so
-- that sliding it (every load and commit) is a HOT update: no new index entry, nothing for vacuum to
-- clean in the indexes. sweep_at is indexed for the sweeper and is only a lower bound of expires_at: a
-- session cannot have expired before it. Loads and commits leave it alone (unless they shorten the
-- expiry); the sweeper, finding a session due whose expiry has moved on, moves sweep_at up to it. So
-- the index changes at most once per idle period of a live session, off the request path.
--
-- Both tables leave room on each page for new row versions (fillfactor), so that updates stay on their
-- page (HOT), and are vacuumed after 2% of their rows died rather than PostgreSQL's default 20%:
-- sessions come and go all day.

CREATE TABLE "__schema__"."__table___version" (
    version integer NOT NULL,
    installed_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE "__schema__"."__table__" (
    sid bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id text COLLATE "C" NOT NULL,
    user_id text COLLATE "C",
    size bigint NOT NULL,
    last_seen bigint NOT NULL,
    expires_at bigint NOT NULL,
    sweep_at bigint NOT NULL
) WITH (fillfactor = 70, autovacuum_vacuum_scale_factor = 0.02);

CREATE UNIQUE INDEX "__table___id" ON "__schema__"."__table__" (id);
CREATE INDEX "__table___user" ON "__schema__"."__table__" (user_id, id) WHERE user_id IS NOT NULL;
CREATE INDEX "__table___sweep" ON "__schema__"."__table__" (sweep_at);

CREATE TABLE "__schema__"."__table___nodes" (
    sid bigint NOT NULL,
    path text COLLATE "C" NOT NULL,
    value text NOT NULL,
    bytes integer NOT NULL,
    PRIMARY KEY (sid, path)
) WITH (fillfactor = 80, autovacuum_vacuum_scale_factor = 0.02);

INSERT INTO "__schema__"."__table___version" (version) VALUES (1);

-- Functions. Every statement from here on is CREATE OR REPLACE, so this part runs again as it is: a store that
-- creates its schema (CreateSchema) runs it at every start, so that the fixes of a newer Sesame reach tables an
-- earlier one made. Where the schema is made by hand, run it again after upgrading Sesame.

-- The database server's clock, in Unix milliseconds.
CREATE OR REPLACE FUNCTION "__schema__"."__table___clock"() RETURNS bigint
LANGUAGE sql VOLATILE AS $$ SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint $$;

-- The number of items of an array node, or NULL when the node is not an array.
CREATE OR REPLACE FUNCTION "__schema__"."__table___items"(p_value text) RETURNS integer
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN left(p_value, 1) = 'A' THEN substr(p_value, 2)::integer WHEN p_value = '[]' THEN 0 END
$$;

-- What a conflict message needs to describe a node: its first character, or the whole array node.
CREATE OR REPLACE FUNCTION "__schema__"."__table___kind"(p_value text) RETURNS text
LANGUAGE sql IMMUTABLE AS $$ SELECT CASE WHEN left(p_value, 1) = 'A' THEN p_value ELSE left(p_value, 1) END $$;

-- A change that does not fit the stored session: update (1-based), code, depth, info. The store
-- turns it into the PathConflictException Sesame's own apply would raise. Raising rolls back
-- everything the call wrote.
CREATE OR REPLACE FUNCTION "__schema__"."__table___conflict"(p_update integer, p_code text, p_depth integer, p_info text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION USING ERRCODE = 'SE001', MESSAGE = 'sesame:' || p_update || ':' || p_code || ':' || p_depth || ':' || p_info;
END $$;

CREATE OR REPLACE FUNCTION "__schema__"."__table___corrupt"(p_reason text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION USING ERRCODE = 'SE003', MESSAGE = p_reason;
END $$;

-- Exact decimal addition of two JSON numbers, as Sesame's JsonNumber.Add: mantissa * 10^exponent,
-- the finer scale kept, written back the way JsonNumber writes it. NULL when an exponent is beyond
-- +-4096 (Sesame refuses such sums rather than round them).
CREATE OR REPLACE FUNCTION "__schema__"."__table___add"(p_a text, p_b text) RETURNS text
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    texts text[] := ARRAY[p_a, p_b];
    digits text[] := ARRAY['', ''];
    exps integer[] := ARRAY[0, 0];
    negs boolean[] := ARRAY[false, false];
    significand text; exponent text; parts text[]; scale integer; e integer; i integer;
    a text; b text; sum numeric; sum_text text; negative boolean; split integer;
BEGIN
    -- Counters: small integers add as bigint.
    IF p_a ~ '^-?[0-9]{1,18}$' AND p_b ~ '^-?[0-9]{1,18}$' THEN
        RETURN (p_a::bigint + p_b::bigint)::text;
    END IF;
    FOR i IN 1 .. 2 LOOP
        parts := regexp_match(texts[i], '^(-?)([0-9]*)(?:\.([0-9]*))?(?:[eE]([-+]?)0*([0-9]*))?$');
        IF parts IS NULL THEN RETURN NULL; END IF;
        IF length(parts[5]) > 9 THEN RETURN NULL; END IF;
        scale := coalesce(length(parts[3]), 0);
        e := coalesce(nullif(parts[5], '')::integer, 0);
        IF parts[4] = '-' THEN e := -e; END IF;
        e := e - scale;
        IF e > 4096 OR e < -4096 THEN RETURN NULL; END IF;
        digits[i] := ltrim(parts[2] || coalesce(parts[3], ''), '0');
        exps[i] := e;
        negs[i] := parts[1] = '-' AND digits[i] <> '';
    END LOOP;
    e := least(exps[1], exps[2]);
    a := CASE WHEN digits[1] = '' THEN '0' ELSE digits[1] || repeat('0', exps[1] - e) END;
    b := CASE WHEN digits[2] = '' THEN '0' ELSE digits[2] || repeat('0', exps[2] - e) END;
    IF length(a) < 131000 AND length(b) < 131000 THEN
        sum := (CASE WHEN negs[1] THEN -1 ELSE 1 END) * a::numeric + (CASE WHEN negs[2] THEN -1 ELSE 1 END) * b::numeric;
        negative := sum < 0;
        sum_text := abs(sum)::text;
    ELSE
        -- Beyond numeric's 131,072 digits: add or subtract the magnitudes nine digits at a time.
        sum_text := "__schema__"."__table___add_digits"(a, b, negs[1] = negs[2]);
        negative := CASE
            WHEN negs[1] = negs[2] THEN negs[1]
            WHEN length(a) <> length(b) THEN (length(a) > length(b)) = negs[1]
            WHEN a = b THEN false
            ELSE (a > b COLLATE "C") = negs[1] END;
        IF sum_text = '0' THEN negative := false; END IF;
    END IF;
    IF e > 0 THEN
        RETURN (CASE WHEN negative THEN '-' ELSE '' END) || sum_text || 'e' || e;
    ELSIF e = 0 THEN
        RETURN (CASE WHEN negative THEN '-' ELSE '' END) || sum_text;
    END IF;
    IF length(sum_text) <= -e THEN sum_text := repeat('0', -e - length(sum_text) + 1) || sum_text; END IF;
    split := length(sum_text) + e;
    RETURN (CASE WHEN negative THEN '-' ELSE '' END) || left(sum_text, split) || '.' || substr(sum_text, split + 1);
END $$;

-- |a| + |b| (p_add) or ||a| - |b|| (otherwise) of two digit strings, without leading zeros: nine digits
-- at a time, each string split into its groups in one pass (substr on long text is not constant time).
CREATE OR REPLACE FUNCTION "__schema__"."__table___add_digits"(p_a text, p_b text, p_add boolean) RETURNS text
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    big text := p_a; small text := p_b; swap text; width integer; x bigint[]; y bigint[];
    groups text[]; carry bigint := 0; d bigint; i integer; result text;
BEGIN
    IF length(small) > length(big) OR (length(small) = length(big) AND small > big COLLATE "C") THEN
        swap := big; big := small; small := swap;
    END IF;
    width := ((length(big) + 8) / 9) * 9;
    SELECT array_agg(m[1]::bigint ORDER BY o) INTO x FROM regexp_matches(lpad(big, width, '0'), '[0-9]{9}', 'g') WITH ORDINALITY AS g(m, o);
    SELECT array_agg(m[1]::bigint ORDER BY o) INTO y FROM regexp_matches(lpad(small, width, '0'), '[0-9]{9}', 'g') WITH ORDINALITY AS g(m, o);
    groups := array_fill(NULL::text, ARRAY[cardinality(x)]);
    FOR i IN REVERSE cardinality(x) .. 1 LOOP
        IF p_add THEN
            d := x[i] + y[i] + carry;
            carry := d / 1000000000;
            d := d % 1000000000;
        ELSE
            d := x[i] - y[i] - carry;
            IF d < 0 THEN d := d + 1000000000; carry := 1; ELSE carry := 0; END IF;
        END IF;
        groups[i] := lpad(d::text, 9, '0');
    END LOOP;
    result := ltrim(CASE WHEN carry > 0 THEN carry::text ELSE '' END || array_to_string(groups, ''), '0');
    RETURN CASE WHEN result = '' THEN '0' ELSE result END;
END $$;

-- Path.modify evaluates the levels below a missing node first: the deepest index past the end of a
-- missing array is the conflict reported.
CREATE OR REPLACE FUNCTION "__schema__"."__table___missing"(p_update integer, p_fields text[], p_from integer, p_k integer) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    j integer;
BEGIN
    FOR j IN REVERSE p_k .. p_from LOOP
        IF left(p_fields[j], 1) = E'\x02' AND substr(p_fields[j], 2)::integer > 0 THEN
            PERFORM "__schema__"."__table___conflict"(p_update, 'missing', j - 1, '');
        END IF;
    END LOOP;
END $$;

-- Follows an update's path (p_k segments) from a root. Gives the deepest level that exists with its
-- path, value and bytes; raises the conflict Sesame's Path.modify raises for a change that creates.
CREATE OR REPLACE FUNCTION "__schema__"."__table___reach"(
    p_sid bigint, p_root text, p_update integer, p_fields text[], p_k integer,
    OUT r_level integer, OUT r_field text, OUT r_value text, OUT r_bytes integer)
LANGUAGE plpgsql AS $$
DECLARE
    i integer; seg text; n integer; c_value text; c_bytes integer;
BEGIN
    r_field := p_root;
    SELECT nd.value, nd.bytes INTO r_value, r_bytes FROM "__schema__"."__table___nodes" nd WHERE nd.sid = p_sid AND nd.path = p_root;
    IF NOT FOUND THEN PERFORM "__schema__"."__table___corrupt"('a tree has no root node'); END IF;
    FOR i IN 1 .. p_k LOOP
        seg := p_fields[i];
        IF left(seg, 1) = E'\x02' THEN
            n := "__schema__"."__table___items"(r_value);
            IF n IS NULL THEN PERFORM "__schema__"."__table___conflict"(p_update, 'kind', i - 1, "__schema__"."__table___kind"(r_value)); END IF;
            IF substr(seg, 2)::integer >= n THEN
                PERFORM "__schema__"."__table___missing"(p_update, p_fields, i + 1, p_k);
                IF substr(seg, 2)::integer > n THEN PERFORM "__schema__"."__table___conflict"(p_update, 'past', i - 1, n::text); END IF;
                r_level := i - 1;
                RETURN;
            END IF;
        ELSIF left(r_value, 1) <> 'O' THEN
            IF r_value <> '{}' THEN PERFORM "__schema__"."__table___conflict"(p_update, 'kind', i - 1, "__schema__"."__table___kind"(r_value)); END IF;
            PERFORM "__schema__"."__table___missing"(p_update, p_fields, i + 1, p_k);
            r_level := i - 1;
            RETURN;
        END IF;
        SELECT nd.value, nd.bytes INTO c_value, c_bytes FROM "__schema__"."__table___nodes" nd WHERE nd.sid = p_sid AND nd.path = r_field || seg;
        IF NOT FOUND THEN
            IF left(seg, 1) = E'\x02' THEN PERFORM "__schema__"."__table___corrupt"('an array names an item that is missing'); END IF;
            PERFORM "__schema__"."__table___missing"(p_update, p_fields, i + 1, p_k);
            r_level := i - 1;
            RETURN;
        END IF;
        r_field := r_field || seg;
        r_value := c_value;
        r_bytes := c_bytes;
    END LOOP;
    r_level := p_k;
END $$;

-- Creates the missing levels p_level+1 .. p_k below the existing container (p_field, p_value,
-- p_bytes) at p_level. Gives the path of the node to write at p_k and the bytes added on the way
-- (the node itself not counted).
CREATE OR REPLACE FUNCTION "__schema__"."__table___attach"(
    p_sid bigint, p_fields text[], p_costs integer[], p_level integer, p_k integer,
    p_field text, p_value text, p_bytes integer, OUT a_target text, OUT a_added bigint)
LANGUAGE plpgsql AS $$
DECLARE
    seg text := p_fields[p_level + 1]; parent text; parent_bytes integer; i integer; next_seg text; b integer;
BEGIN
    IF left(seg, 1) = E'\x02' THEN
        parent := 'A' || ("__schema__"."__table___items"(p_value) + 1);
        parent_bytes := p_bytes + CASE WHEN p_value = '[]' THEN 0 ELSE 1 END;
    ELSIF p_value = '{}' THEN
        parent := 'O' || seg;
        parent_bytes := p_bytes + p_costs[p_level + 1];
    ELSE
        parent := p_value || seg;
        parent_bytes := p_bytes + 1 + p_costs[p_level + 1];
    END IF;
    UPDATE "__schema__"."__table___nodes" SET value = parent, bytes = parent_bytes WHERE sid = p_sid AND path = p_field;
    a_added := parent_bytes - p_bytes;
    a_target := p_field || seg;
    FOR i IN p_level + 1 .. p_k - 1 LOOP
        next_seg := p_fields[i + 1];
        IF left(next_seg, 1) = E'\x02' THEN
            b := 2;
            INSERT INTO "__schema__"."__table___nodes" (sid, path, value, bytes) VALUES (p_sid, a_target, 'A1', b);
        ELSE
            b := 2 + p_costs[i + 1];
            INSERT INTO "__schema__"."__table___nodes" (sid, path, value, bytes) VALUES (p_sid, a_target, 'O' || next_seg, b);
        END IF;
        a_added := a_added + b;
        a_target := a_target || next_seg;
    END LOOP;
END $$;

-- Writes a value's nodes (paths relative to p_target). The target row is overwritten in place.
CREATE OR REPLACE FUNCTION "__schema__"."__table___write"(p_sid bigint, p_target text, p_paths text[], p_values text[], p_bytes integer[]) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF cardinality(p_paths) = 1 THEN
        -- A leaf (most changes): one row.
        INSERT INTO "__schema__"."__table___nodes" (sid, path, value, bytes) VALUES (p_sid, p_target, p_values[1], p_bytes[1])
        ON CONFLICT (sid, path) DO UPDATE SET value = excluded.value, bytes = excluded.bytes;
    ELSE
        INSERT INTO "__schema__"."__table___nodes" (sid, path, value, bytes)
        SELECT p_sid, p_target || n.rel, n.val, n.b FROM unnest(p_paths, p_values, p_bytes) AS n(rel, val, b)
        ON CONFLICT (sid, path) DO UPDATE SET value = excluded.value, bytes = excluded.bytes;
    END IF;
END $$;

-- Set: the value at the path, replacing what was there. Gives the change of the tree's size.
CREATE OR REPLACE FUNCTION "__schema__"."__table___set"(
    p_sid bigint, p_root text, p_update integer, p_fields text[], p_costs integer[], p_k integer,
    p_paths text[], p_values text[], p_bytes integer[], p_size bigint) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    r record; a record; target text; delta bigint; removed bigint;
BEGIN
    SELECT * INTO r FROM "__schema__"."__table___reach"(p_sid, p_root, p_update, p_fields, p_k);
    IF r.r_level = p_k THEN
        target := r.r_field;
        removed := 0;
        IF left(r.r_value, 1) IN ('A', 'O') THEN
            WITH d AS (
                DELETE FROM "__schema__"."__table___nodes"
                WHERE sid = p_sid AND path > target AND path < target || E'\x03' RETURNING bytes)
            SELECT coalesce(sum(d.bytes), 0) INTO removed FROM d;
        END IF;
        delta := p_size - removed - r.r_bytes;
    ELSE
        SELECT * INTO a FROM "__schema__"."__table___attach"(p_sid, p_fields, p_costs, r.r_level, p_k, r.r_field, r.r_value, r.r_bytes);
        target := a.a_target;
        delta := a.a_added + p_size;
    END IF;
    PERFORM "__schema__"."__table___write"(p_sid, target, p_paths, p_values, p_bytes);
    RETURN delta;
END $$;

-- Append: the value at the end of the array at the path (a missing array is created).
CREATE OR REPLACE FUNCTION "__schema__"."__table___append"(
    p_sid bigint, p_root text, p_update integer, p_fields text[], p_costs integer[], p_k integer,
    p_paths text[], p_values text[], p_bytes integer[], p_size bigint) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    r record; a record; n integer := 0;
BEGIN
    SELECT * INTO r FROM "__schema__"."__table___reach"(p_sid, p_root, p_update, p_fields, p_k);
    IF r.r_level = p_k THEN
        n := "__schema__"."__table___items"(r.r_value);
        IF n IS NULL THEN PERFORM "__schema__"."__table___conflict"(p_update, 'notarray', p_k, "__schema__"."__table___kind"(r.r_value)); END IF;
    END IF;
    -- As setting index n of an array of n items: the deepest existing level is the same one.
    SELECT * INTO a FROM "__schema__"."__table___attach"(
        p_sid, p_fields || (E'\x02' || n), p_costs || 0, r.r_level, p_k + 1, r.r_field, r.r_value, r.r_bytes);
    PERFORM "__schema__"."__table___write"(p_sid, a.a_target, p_paths, p_values, p_bytes);
    RETURN a.a_added + p_size;
END $$;

-- Increment: adds exactly to the number at the path (a missing one counts as zero).
CREATE OR REPLACE FUNCTION "__schema__"."__table___increment"(
    p_sid bigint, p_root text, p_update integer, p_fields text[], p_costs integer[], p_k integer, p_by text) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    r record; a record; total text;
BEGIN
    SELECT * INTO r FROM "__schema__"."__table___reach"(p_sid, p_root, p_update, p_fields, p_k);
    IF r.r_level < p_k THEN
        SELECT * INTO a FROM "__schema__"."__table___attach"(p_sid, p_fields, p_costs, r.r_level, p_k, r.r_field, r.r_value, r.r_bytes);
        INSERT INTO "__schema__"."__table___nodes" (sid, path, value, bytes) VALUES (p_sid, a.a_target, p_by, octet_length(p_by));
        RETURN a.a_added + octet_length(p_by);
    END IF;
    IF r.r_value !~ '^-?[0-9]' THEN
        PERFORM "__schema__"."__table___conflict"(p_update, 'notnumber', p_k, "__schema__"."__table___kind"(r.r_value));
    END IF;
    total := "__schema__"."__table___add"(r.r_value, p_by);
    IF total IS NULL THEN PERFORM "__schema__"."__table___conflict"(p_update, 'overflow', p_k, r.r_value); END IF;
    UPDATE "__schema__"."__table___nodes" SET value = total, bytes = octet_length(total) WHERE sid = p_sid AND path = r.r_field;
    RETURN octet_length(total) - r.r_bytes;
END $$;

-- Remove: the object key at the path; nothing happens when it is not there.
CREATE OR REPLACE FUNCTION "__schema__"."__table___remove"(
    p_sid bigint, p_root text, p_update integer, p_fields text[], p_costs integer[], p_k integer) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    i integer; seg text; n integer; field text := p_root; val text; b integer;
    parent_field text; parent_value text; parent_bytes integer; removed bigint; members text; at integer;
    new_value text; new_bytes integer;
BEGIN
    IF p_k = 0 OR left(p_fields[p_k], 1) = E'\x02' THEN
        PERFORM "__schema__"."__table___conflict"(p_update, 'removeindex', p_k, '');
    END IF;
    SELECT nd.value, nd.bytes INTO val, b FROM "__schema__"."__table___nodes" nd WHERE nd.sid = p_sid AND nd.path = field;
    IF NOT FOUND THEN PERFORM "__schema__"."__table___corrupt"('a tree has no root node'); END IF;
    FOR i IN 1 .. p_k LOOP
        seg := p_fields[i];
        IF left(seg, 1) = E'\x02' THEN
            n := "__schema__"."__table___items"(val);
            IF n IS NULL OR substr(seg, 2)::integer >= n THEN RETURN 0; END IF;
        ELSIF left(val, 1) <> 'O' THEN
            RETURN 0;
        END IF;
        parent_field := field;
        parent_value := val;
        parent_bytes := b;
        field := field || seg;
        SELECT nd.value, nd.bytes INTO val, b FROM "__schema__"."__table___nodes" nd WHERE nd.sid = p_sid AND nd.path = field;
        IF NOT FOUND THEN RETURN 0; END IF;
    END LOOP;
    WITH d AS (
        DELETE FROM "__schema__"."__table___nodes" WHERE sid = p_sid AND path >= field AND path < field || E'\x03' RETURNING bytes)
    SELECT sum(d.bytes) INTO removed FROM d;
    -- The member leaves the object's list; a sentinel \x01 makes every entry end with one.
    members := parent_value || E'\x01';
    at := strpos(members, p_fields[p_k] || E'\x01');
    IF at = 0 THEN PERFORM "__schema__"."__table___corrupt"('an object does not list a member it holds'); END IF;
    new_value := left(left(members, at - 1) || substr(members, at + length(p_fields[p_k])), -1);
    IF new_value = 'O' THEN
        new_value := '{}';
        new_bytes := 2;
    ELSE
        new_bytes := parent_bytes - 1 - p_costs[p_k];
    END IF;
    UPDATE "__schema__"."__table___nodes" SET value = new_value, bytes = new_bytes WHERE sid = p_sid AND path = parent_field;
    RETURN new_bytes - parent_bytes - removed;
END $$;

-- Applies a change's updates in order to the session p_sid, whose data tree is p_total bytes.
-- p_ops holds one code per update: its tree ('d' data, 'm' facts; 'D' and 'M' for the shape
-- upgrade's updates, applied only when the upgrade is) and its operation ('s' set, 'a' append,
-- 'i' increment, 'r' remove). p_seg_counts says how many of p_segs (and p_costs, each key's "key":
-- bytes) each update's path takes; p_node_counts how many of p_paths, p_values, p_bytes its value
-- takes; p_sizes is a value's size in bytes, p_numbers an increment's number.
-- Gives the data tree's new size, or -1 when the stored shape rules the change out (nothing written).
CREATE OR REPLACE FUNCTION "__schema__"."__table___apply"(
    p_sid bigint, p_total bigint, p_upgrade_from integer, p_upgrade_to integer,
    p_ops text[], p_seg_counts integer[], p_segs text[], p_costs integer[],
    p_node_counts integer[], p_paths text[], p_values text[], p_bytes integer[], p_sizes bigint[], p_numbers text[])
RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    upgrading boolean := false; shape_text text; shape numeric := 0;
    u integer; op text; tree text; root text; k integer; nc integer; sp integer := 0; np integer := 0;
    delta bigint; total bigint := p_total; roots_set boolean := false; target text;
BEGIN
    IF p_upgrade_from IS NOT NULL THEN
        SELECT nd.value INTO shape_text FROM "__schema__"."__table___nodes" nd WHERE nd.sid = p_sid AND nd.path = E'\x04\x01shape';
        IF shape_text ~ '^-?[0-9]{1,19}$' THEN
            shape := shape_text::numeric;
            IF shape < 0 OR shape > 2147483647 THEN shape := 0; END IF;
        END IF;
        IF shape = p_upgrade_from THEN
            upgrading := true;
        ELSIF shape <> p_upgrade_to THEN
            RETURN -1;
        END IF;
    END IF;
    FOR u IN 1 .. coalesce(cardinality(p_ops), 0) LOOP
        op := p_ops[u];
        k := p_seg_counts[u];
        nc := p_node_counts[u];
        tree := left(op, 1);
        IF tree = 'd' OR tree = 'm' OR upgrading THEN
            root := CASE WHEN tree = 'd' OR tree = 'D' THEN '' ELSE E'\x04' END;
            delta := NULL;
            -- The common changes in one statement each: an integer incremented by an integer, a leaf set over a leaf.
            -- A node at the full path means every level above it exists and lists it, so there is nothing to walk or
            -- create; anything else (a missing node, a container, a decimal) takes the general way below, which
            -- gives the same result. A leaf's bytes are its text's length.
            IF k > 0 THEN
                target := root || array_to_string(p_segs[sp + 1 : sp + k], '');
                IF right(op, 1) = 'i' AND p_numbers[u] ~ '^-?[0-9]{1,18}$' THEN
                    UPDATE "__schema__"."__table___nodes" nd SET value = x.sum, bytes = octet_length(x.sum)
                    FROM (SELECT o.path, o.bytes, (o.value::bigint + p_numbers[u]::bigint)::text AS sum
                          FROM "__schema__"."__table___nodes" o
                          WHERE o.sid = p_sid AND o.path = target AND o.value ~ '^-?[0-9]{1,18}$') x
                    WHERE nd.sid = p_sid AND nd.path = x.path
                    RETURNING octet_length(x.sum) - x.bytes INTO delta;
                ELSIF right(op, 1) = 's' AND nc = 1 THEN
                    UPDATE "__schema__"."__table___nodes" nd SET value = p_values[np + 1], bytes = p_bytes[np + 1]
                    FROM "__schema__"."__table___nodes" o
                    WHERE o.sid = p_sid AND o.path = target AND left(o.value, 1) NOT IN ('A', 'O')
                      AND nd.sid = p_sid AND nd.path = o.path
                    RETURNING p_sizes[u] - o.bytes INTO delta;
                END IF;
            END IF;
            IF delta IS NULL THEN
                CASE right(op, 1)
                    WHEN 's' THEN
                        delta := "__schema__"."__table___set"(p_sid, root, u, p_segs[sp + 1 : sp + k], p_costs[sp + 1 : sp + k], k,
                            p_paths[np + 1 : np + nc], p_values[np + 1 : np + nc], p_bytes[np + 1 : np + nc], p_sizes[u]);
                    WHEN 'a' THEN
                        delta := "__schema__"."__table___append"(p_sid, root, u, p_segs[sp + 1 : sp + k], p_costs[sp + 1 : sp + k], k,
                            p_paths[np + 1 : np + nc], p_values[np + 1 : np + nc], p_bytes[np + 1 : np + nc], p_sizes[u]);
                    WHEN 'i' THEN
                        delta := "__schema__"."__table___increment"(p_sid, root, u, p_segs[sp + 1 : sp + k], p_costs[sp + 1 : sp + k], k, p_numbers[u]);
                    WHEN 'r' THEN
                        delta := "__schema__"."__table___remove"(p_sid, root, u, p_segs[sp + 1 : sp + k], p_costs[sp + 1 : sp + k], k);
                END CASE;
            END IF;
            IF root = '' THEN total := total + delta; END IF;
            IF k = 0 AND right(op, 1) = 's' THEN roots_set := true; END IF;
        END IF;
        sp := sp + k;
        np := np + nc;
    END LOOP;
    -- A tree's root set to something else than an object is no session (once every update applied, as Sesame checks).
    IF roots_set THEN
        PERFORM 1 FROM "__schema__"."__table___nodes" nd
        WHERE nd.sid = p_sid AND nd.path IN ('', E'\x04') AND nd.value <> '{}' AND left(nd.value, 1) <> 'O';
        IF FOUND THEN
            RAISE EXCEPTION USING ERRCODE = 'SE005', MESSAGE = 'sesame:a tree would not be an object';
        END IF;
    END IF;
    RETURN total;
END $$;

-- Ends a session: deletes its row and nodes; gives the nodes of its facts (to report it).
CREATE OR REPLACE FUNCTION "__schema__"."__table___end"(p_sid bigint, OUT paths text[], OUT vals text[])
LANGUAGE plpgsql AS $$
BEGIN
    WITH d AS (DELETE FROM "__schema__"."__table___nodes" WHERE sid = p_sid RETURNING path, value)
    SELECT array_agg(d.path) FILTER (WHERE d.path >= E'\x04'), array_agg(d.value) FILTER (WHERE d.path >= E'\x04')
    INTO paths, vals FROM d;
    DELETE FROM "__schema__"."__table__" WHERE sid = p_sid;
END $$;

-- Loads a session and slides its idle expiry (unless it was slid less than p_refresh ms ago).
-- status: 'ok' (paths, vals: every node), 'none', or 'expired' (it ended now; paths, vals: its facts).
CREATE OR REPLACE FUNCTION "__schema__"."__table___load"(
    p_id text, p_idle bigint, p_refresh bigint,
    OUT status text, OUT paths text[], OUT vals text[])
LANGUAGE plpgsql AS $$
DECLARE
    t bigint := "__schema__"."__table___clock"(); expires bigint := t + p_idle;
    v_sid bigint; v_expires bigint; v_seen bigint; ended record; slid boolean := false;
BEGIN
    LOOP
        IF p_refresh <= 0 THEN
            -- Every load slides: a live session's row is slid and locked by the statement that finds it (which waits
            -- for a commit in flight, so the nodes read next are its result).
            UPDATE "__schema__"."__table__" s SET expires_at = expires, last_seen = t, sweep_at = least(s.sweep_at, expires)
            WHERE s.id = p_id AND s.expires_at > t RETURNING s.sid INTO v_sid;
            slid := FOUND;
        END IF;
        IF slid THEN
            PERFORM set_config('synchronous_commit', 'off', true);
        ELSE
            SELECT s.sid, s.expires_at, s.last_seen INTO v_sid, v_expires, v_seen FROM "__schema__"."__table__" s WHERE s.id = p_id;
            IF NOT FOUND THEN
                status := 'none';
                RETURN;
            END IF;
            IF v_expires <= t THEN
                -- Expired: it ends now, unless a commit revived it meanwhile (then look again).
                PERFORM 1 FROM "__schema__"."__table__" s WHERE s.sid = v_sid AND s.expires_at <= t FOR UPDATE;
                IF FOUND THEN
                    SELECT * INTO ended FROM "__schema__"."__table___end"(v_sid);
                    -- Only a slide's or an expiry's write: a crash that loses it loses nothing acknowledged.
                    PERFORM set_config('synchronous_commit', 'off', true);
                    status := 'expired';
                    paths := ended.paths;
                    vals := ended.vals;
                    RETURN;
                END IF;
                CONTINUE;
            END IF;
            IF p_refresh <= 0 OR expires < v_expires OR expires - v_expires >= p_refresh OR t - v_seen >= p_refresh THEN
                -- The row lock also waits for a commit in flight, so the nodes read next are its result.
                UPDATE "__schema__"."__table__" s SET expires_at = expires, last_seen = t, sweep_at = least(s.sweep_at, expires)
                WHERE s.sid = v_sid AND s.id = p_id AND s.expires_at > t;
                IF NOT FOUND THEN CONTINUE; END IF;
                PERFORM set_config('synchronous_commit', 'off', true);
            END IF;
        END IF;
        -- The id again, in the statement that reads the nodes (one snapshot): a move (sign-in) keeps the sid and gives
        -- the row a new id, and one that committed since the row was read above must not be served under the old id.
        -- (A slide above locked the row, which a move then waits for; without one nothing held it.)
        SELECT array_agg(nd.path), array_agg(nd.value) INTO paths, vals FROM "__schema__"."__table___nodes" nd
        WHERE nd.sid = v_sid AND EXISTS (SELECT 1 FROM "__schema__"."__table__" s WHERE s.sid = v_sid AND s.id = p_id);
        status := CASE WHEN paths IS NULL THEN 'none' ELSE 'ok' END;
        RETURN;
    END LOOP;
END $$;

-- Commits a change (see __table___apply for the updates' arguments) to session p_id and slides its
-- expiry. status: 'ok', 'gone' (p_must_exist and there is no live session), 'shape' (nothing stored).
-- A session found expired ends now and is given in ended_paths, ended_values (its facts).
-- Conflicts (SE001) and a tree over p_max_size bytes (SE002) raise, so nothing is stored.
CREATE OR REPLACE FUNCTION "__schema__"."__table___commit"(
    p_id text, p_must_exist boolean, p_idle bigint, p_max_size bigint,
    p_upgrade_from integer, p_upgrade_to integer,
    p_ops text[], p_seg_counts integer[], p_segs text[], p_costs integer[],
    p_node_counts integer[], p_paths text[], p_values text[], p_bytes integer[], p_sizes bigint[], p_numbers text[],
    OUT status text, OUT ended_paths text[], OUT ended_values text[])
LANGUAGE plpgsql AS $$
DECLARE
    t bigint := "__schema__"."__table___clock"(); v_sid bigint; v_expires bigint; v_total bigint; ended record;
    -- The data tree's size as the row has it, once the row has been slid (NULL: not yet).
    v_slid_size bigint;
BEGIN
    -- A live session (most commits): slid and locked by the statement that finds it. Not with a shape upgrade, which
    -- the stored shape may refuse, storing nothing.
    IF p_upgrade_from IS NULL THEN
        UPDATE "__schema__"."__table__" s SET last_seen = t, expires_at = t + p_idle, sweep_at = least(s.sweep_at, t + p_idle)
        WHERE s.id = p_id AND s.expires_at > t RETURNING s.sid, s.size INTO v_sid, v_total;
        v_slid_size := v_total;
    END IF;
    WHILE v_slid_size IS NULL LOOP
        SELECT s.sid, s.expires_at, s.size INTO v_sid, v_expires, v_total FROM "__schema__"."__table__" s WHERE s.id = p_id FOR UPDATE;
        IF FOUND THEN
            EXIT WHEN v_expires > t;
            SELECT * INTO ended FROM "__schema__"."__table___end"(v_sid);
            ended_paths := ended.paths;
            ended_values := ended.vals;
        END IF;
        IF p_must_exist THEN
            status := 'gone';
            RETURN;
        END IF;
        -- A new session has shape 0.
        IF p_upgrade_from IS NOT NULL AND p_upgrade_from <> 0 AND p_upgrade_to <> 0 THEN
            status := 'shape';
            RETURN;
        END IF;
        -- With the expiry it will have, so that the update below changes no indexed column (a HOT update).
        INSERT INTO "__schema__"."__table__" (id, size, last_seen, expires_at, sweep_at) VALUES (p_id, 2, t, t + p_idle, t + p_idle)
        ON CONFLICT (id) DO NOTHING RETURNING sid INTO v_sid;
        IF FOUND THEN
            INSERT INTO "__schema__"."__table___nodes" (sid, path, value, bytes) VALUES (v_sid, '', '{}', 2), (v_sid, E'\x04', '{}', 2);
            v_total := 2;
            v_slid_size := 2;
        END IF;
        -- Otherwise another commit created it first: commit to that one.
    END LOOP;
    v_total := "__schema__"."__table___apply"(v_sid, v_total, p_upgrade_from, p_upgrade_to,
        p_ops, p_seg_counts, p_segs, p_costs, p_node_counts, p_paths, p_values, p_bytes, p_sizes, p_numbers);
    IF v_total < 0 THEN
        status := 'shape';
        RETURN;
    END IF;
    IF v_total > p_max_size THEN
        RAISE EXCEPTION USING ERRCODE = 'SE002', MESSAGE = 'sesame:' || v_total;
    END IF;
    IF v_slid_size IS NULL THEN
        UPDATE "__schema__"."__table__" s
        SET size = v_total, last_seen = t, expires_at = t + p_idle, sweep_at = least(s.sweep_at, t + p_idle)
        WHERE s.sid = v_sid;
    ELSIF v_total <> v_slid_size THEN
        UPDATE "__schema__"."__table__" s SET size = v_total WHERE s.sid = v_sid;
    END IF;
    status := 'ok';
END $$;

-- Moves session p_from (NULL: a new session) to the fresh id p_to, applying a change, in one step.
-- p_user_mode says which user the change binds the session to, so that user's lock is taken before
-- any session row (0: the one it has, 1: p_user, 2: none); the user bound is the one the facts
-- name afterwards. p_limit (0: none) bounds the user's sessions: p_refuse raises SE004 (nothing
-- changed), otherwise the least recently seen are ended. status: 'ok', 'gone', 'shape'.
-- Sessions ended on the way (p_from found expired: 'e'; over the user's limit: 'u') are given in
-- ended_ids, ended_reasons, and ended_counts facts nodes each in ended_paths, ended_values.
CREATE OR REPLACE FUNCTION "__schema__"."__table___move"(
    p_from text, p_to text, p_user_mode integer, p_user text,
    p_idle bigint, p_max_size bigint, p_limit integer, p_refuse boolean,
    p_upgrade_from integer, p_upgrade_to integer,
    p_ops text[], p_seg_counts integer[], p_segs text[], p_costs integer[],
    p_node_counts integer[], p_paths text[], p_values text[], p_bytes integer[], p_sizes bigint[], p_numbers text[],
    OUT status text, OUT ended_ids text[], OUT ended_reasons text[], OUT ended_counts integer[],
    OUT ended_paths text[], OUT ended_values text[])
LANGUAGE plpgsql AS $$
DECLARE
    t bigint := "__schema__"."__table___clock"(); lock_class integer := hashtext('__schema__.__table__');
    v_sid bigint; v_user text; v_read_user text; v_expires bigint; v_total bigint;
    lock_user text; new_user text; user_node text; excess bigint; r record; ended record;
BEGIN
    IF p_from IS NOT NULL THEN
        -- The user's lock first, then the row: a sign-in that ends this user's sessions takes them in that order too.
        SELECT s.user_id INTO v_read_user FROM "__schema__"."__table__" s WHERE s.id = p_from;
        IF NOT FOUND THEN
            status := 'gone';
            RETURN;
        END IF;
        lock_user := CASE p_user_mode WHEN 0 THEN v_read_user WHEN 1 THEN p_user END;
        IF lock_user IS NOT NULL THEN PERFORM pg_advisory_xact_lock(lock_class, hashtext(lock_user)); END IF;
        SELECT s.sid, s.user_id, s.expires_at, s.size INTO v_sid, v_user, v_expires, v_total
        FROM "__schema__"."__table__" s WHERE s.id = p_from FOR UPDATE;
        IF NOT FOUND THEN
            status := 'gone';
            RETURN;
        END IF;
        IF v_expires <= t THEN
            SELECT * INTO ended FROM "__schema__"."__table___end"(v_sid);
            ended_ids := ARRAY[p_from];
            ended_reasons := ARRAY['e'];
            ended_counts := ARRAY[coalesce(cardinality(ended.paths), 0)];
            ended_paths := ended.paths;
            ended_values := ended.vals;
            status := 'gone';
            RETURN;
        END IF;
    ELSE
        IF p_upgrade_from IS NOT NULL AND p_upgrade_from <> 0 AND p_upgrade_to <> 0 THEN
            status := 'shape';
            RETURN;
        END IF;
        lock_user := CASE p_user_mode WHEN 1 THEN p_user END;
        IF lock_user IS NOT NULL THEN PERFORM pg_advisory_xact_lock(lock_class, hashtext(lock_user)); END IF;
        -- A taken id raises unique_violation. Made with the user and expiry it will have, so that the update
        -- below changes no indexed column.
        INSERT INTO "__schema__"."__table__" (id, user_id, size, last_seen, expires_at, sweep_at)
        VALUES (p_to, lock_user, 2, t, t + p_idle, t + p_idle) RETURNING sid INTO v_sid;
        INSERT INTO "__schema__"."__table___nodes" (sid, path, value, bytes) VALUES (v_sid, '', '{}', 2), (v_sid, E'\x04', '{}', 2);
        v_total := 2;
    END IF;
    v_total := "__schema__"."__table___apply"(v_sid, v_total, p_upgrade_from, p_upgrade_to,
        p_ops, p_seg_counts, p_segs, p_costs, p_node_counts, p_paths, p_values, p_bytes, p_sizes, p_numbers);
    IF v_total < 0 THEN
        status := 'shape';
        RETURN;
    END IF;
    IF v_total > p_max_size THEN
        RAISE EXCEPTION USING ERRCODE = 'SE002', MESSAGE = 'sesame:' || v_total;
    END IF;
    SELECT nd.value INTO user_node FROM "__schema__"."__table___nodes" nd WHERE nd.sid = v_sid AND nd.path = E'\x04\x01user';
    new_user := CASE WHEN left(user_node, 1) = '"' THEN user_node::json #>> '{}' END;
    IF new_user IS NOT NULL AND new_user IS DISTINCT FROM lock_user THEN
        PERFORM pg_advisory_xact_lock(lock_class, hashtext(new_user));
    END IF;
    IF new_user IS NOT NULL AND p_limit > 0 THEN
        SELECT count(*) + 1 - p_limit INTO excess FROM "__schema__"."__table__" s
        WHERE s.user_id = new_user AND s.sid <> v_sid AND s.expires_at > t;
        IF excess > 0 THEN
            IF p_refuse THEN
                RAISE EXCEPTION USING ERRCODE = 'SE004', MESSAGE = 'sesame:the user has as many sessions as allowed';
            END IF;
            FOR r IN
                SELECT s.sid, s.id FROM "__schema__"."__table__" s
                WHERE s.user_id = new_user AND s.sid <> v_sid AND s.expires_at > t
                ORDER BY s.last_seen, s.id LIMIT excess FOR UPDATE
            LOOP
                SELECT * INTO ended FROM "__schema__"."__table___end"(r.sid);
                ended_ids := ended_ids || r.id;
                ended_reasons := ended_reasons || 'u'::text;
                ended_counts := ended_counts || coalesce(cardinality(ended.paths), 0);
                ended_paths := ended_paths || ended.paths;
                ended_values := ended_values || ended.vals;
            END LOOP;
        END IF;
    END IF;
    UPDATE "__schema__"."__table__" s
    SET id = p_to, user_id = new_user, size = v_total, last_seen = t, expires_at = t + p_idle, sweep_at = least(s.sweep_at, t + p_idle)
    WHERE s.sid = v_sid;
    status := 'ok';
END $$;

-- Deletes a session; true when it was live.
CREATE OR REPLACE FUNCTION "__schema__"."__table___delete"(p_id text) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    v_sid bigint; v_expires bigint;
BEGIN
    DELETE FROM "__schema__"."__table__" s WHERE s.id = p_id RETURNING s.sid, s.expires_at INTO v_sid, v_expires;
    IF NOT FOUND THEN RETURN false; END IF;
    DELETE FROM "__schema__"."__table___nodes" WHERE sid = v_sid;
    RETURN v_expires > "__schema__"."__table___clock"();
END $$;

-- Visits up to p_batch sessions that are due (sweep_at passed), skipping any a commit or another sweeper
-- holds (it never waits for a lock, and nothing waits long for it): the expired ones are deleted and
-- given with their facts' nodes (expired true); for the others, whose expiry moved on since, sweep_at
-- moves up to their expiry (expired false). Fewer than p_batch rows: nothing else is due.
CREATE OR REPLACE FUNCTION "__schema__"."__table___sweep"(p_batch integer) RETURNS TABLE (id text, expired boolean, paths text[], vals text[])
LANGUAGE sql AS $$
    WITH t AS (SELECT "__schema__"."__table___clock"() AS ms),
    due AS (
        SELECT s.sid, s.expires_at <= t.ms AS expired FROM "__schema__"."__table__" s, t
        WHERE s.sweep_at <= t.ms
        ORDER BY s.sweep_at LIMIT p_batch
        FOR UPDATE OF s SKIP LOCKED),
    moved_on AS (
        UPDATE "__schema__"."__table__" s SET sweep_at = s.expires_at FROM due d
        WHERE s.sid = d.sid AND NOT d.expired RETURNING s.id),
    gone AS (DELETE FROM "__schema__"."__table__" s USING due d WHERE s.sid = d.sid AND d.expired RETURNING s.sid, s.id),
    gone_nodes AS (
        DELETE FROM "__schema__"."__table___nodes" n USING due d WHERE n.sid = d.sid AND d.expired RETURNING n.sid, n.path, n.value)
    SELECT g.id, true, m.paths, m.vals
    FROM gone g
    LEFT JOIN (
        SELECT gn.sid, array_agg(gn.path) AS paths, array_agg(gn.value) AS vals
        FROM gone_nodes gn WHERE gn.path >= E'\x04' GROUP BY gn.sid) m ON m.sid = g.sid
    UNION ALL
    SELECT mo.id, false, NULL, NULL FROM moved_on mo
$$;
