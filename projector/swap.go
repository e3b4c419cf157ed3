package projector

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// swap replaces the live tables with the rebuilt ones in one transaction. It reports
// false, having changed nothing, when the rebuild did not reach the processor's offsets
// within SwapWait.
func (r *rebuild) swap(ctx context.Context) (bool, error) {
	tx, err := r.live.Begin(ctx)
	if err != nil {
		return false, fmt.Errorf("swap: begin: %w", err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	if _, err := tx.Exec(ctx, `SELECT set_config('lock_timeout', $1, true)`, fmt.Sprintf("%dms", r.cfg.LockTimeout.Milliseconds())); err != nil {
		return false, fmt.Errorf("swap: set lock_timeout: %w", err)
	}
	// The projector's next transaction waits here: from now on the live tables take
	// nothing new, and the processor's offsets say all they hold.
	if _, err := tx.Exec(ctx, `LOCK TABLE `+ident(r.liveSchema, "projector_offsets")+` IN ACCESS EXCLUSIVE MODE`); err != nil {
		return false, fmt.Errorf("swap: lock projector_offsets: %w", err)
	}
	// Kafka answering slowly must not hold the projector for long either.
	kctx, cancel := context.WithTimeout(ctx, max(r.cfg.SwapWait, 10*time.Second))
	target, err := r.processorOffsets(kctx)
	cancel()
	if err != nil && ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if ok, err := r.waitFor(ctx, target, r.cfg.SwapWait); err != nil || !ok {
		return false, err
	}

	r.gate.Lock() // the workers finish their batch and wait
	committed := false
	defer func() {
		r.stopped = committed
		r.gate.Unlock()
	}()

	locked := make([]string, len(readModelTables))
	for i, t := range readModelTables {
		locked[i] = ident(r.liveSchema, t)
	}
	// In the order Apply writes them, so that a writer holding one never waits for us.
	if _, err := tx.Exec(ctx, `LOCK TABLE `+strings.Join(locked, ", ")+` IN ACCESS EXCLUSIVE MODE`); err != nil {
		return false, fmt.Errorf("swap: lock the live tables: %w", err)
	}
	if err := r.carryOver(ctx, tx); err != nil {
		return false, fmt.Errorf("swap: %w", err)
	}
	if err := r.copyGrants(ctx, tx); err != nil {
		return false, err
	}
	if err := r.moveObjects(ctx, tx); err != nil {
		return false, err
	}
	if err := tx.Commit(ctx); err != nil {
		return false, fmt.Errorf("swap: commit: %w", err)
	}
	committed = true
	return true, nil
}

// carryOver copies into the rebuilt tables what the log does not hold: the projector's
// offsets, page tokens, names from imports (page-synced names, with name_at, are in the
// log and win over imported ones as in mergePages), pages only an import knows, and
// when each page first appeared.
func (r *rebuild) carryOver(ctx context.Context, tx pgx.Tx) error {
	lr := func(t string) string { return ident(r.liveSchema, t) }
	rr := func(t string) string { return ident(r.schema, t) }
	for _, s := range []struct{ what, sql string }{
		{"copy projector_offsets", `INSERT INTO ` + rr("projector_offsets") + ` (consumer_group, topic, partition, next_offset, updated_at)
			SELECT consumer_group, topic, partition, next_offset, updated_at FROM ` + lr("projector_offsets") + `
			ON CONFLICT DO NOTHING`},
		{"carry over page tokens and imported names", `UPDATE ` + rr("facebook_pages") + ` AS r SET
			access_token = coalesce(l.access_token, r.access_token),
			name = CASE WHEN r.name IS NULL AND l.name_at IS NULL THEN l.name ELSE r.name END,
			created_at = least(r.created_at, l.created_at)
			FROM ` + lr("facebook_pages") + ` AS l WHERE l.page_id = r.page_id`},
		{"carry over imported pages", `INSERT INTO ` + rr("facebook_pages") + `
			(page_id, name, name_at, access_token, last_synced_at, version, created_at, updated_at)
			SELECT page_id, name, name_at, access_token, last_synced_at, version, created_at, updated_at
			FROM ` + lr("facebook_pages") + ` AS l
			WHERE NOT EXISTS (SELECT 1 FROM ` + rr("facebook_pages") + ` AS r WHERE r.page_id = l.page_id)`},
	} {
		if _, err := tx.Exec(ctx, s.sql); err != nil {
			return fmt.Errorf("%s: %w", s.what, err)
		}
	}
	return nil
}

// schemaObject is an object of the read model's schema that the swap moves: a relation
// (indexes, constraints, owned sequences and triggers go with their table), a routine or
// a type.
type schemaObject struct {
	kind string // the ALTER keyword: TABLE, VIEW, SEQUENCE, ROUTINE, TYPE, DOMAIN, …
	name string // quoted
	args string // a routine's argument list, with parentheses
	key  string // what matches it across schemas
}

const objectsSQL = `
SELECT CASE c.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW' WHEN 'S' THEN 'SEQUENCE'
        WHEN 'f' THEN 'FOREIGN TABLE' ELSE 'TABLE' END, quote_ident(c.relname), '', 'rel ' || c.relname
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = $1 AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                  AND (d.deptype = 'e' OR (c.relkind = 'S' AND d.deptype IN ('a', 'i'))))
UNION ALL
SELECT 'ROUTINE', quote_ident(p.proname), '(' || pg_get_function_identity_arguments(p.oid) || ')',
       'routine ' || p.proname || '(' || pg_get_function_identity_arguments(p.oid) || ')'
FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
WHERE n.nspname = $1
  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e')
UNION ALL
SELECT CASE t.typtype WHEN 'd' THEN 'DOMAIN' ELSE 'TYPE' END, quote_ident(t.typname), '', 'type ' || t.typname
FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
WHERE n.nspname = $1 AND t.typtype IN ('e', 'd', 'r', 'c')
  AND (t.typtype <> 'c' OR (SELECT c.relkind FROM pg_class c WHERE c.oid = t.typrelid) = 'c')
  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_type'::regclass AND d.objid = t.oid AND d.deptype = 'e')`

func schemaObjects(ctx context.Context, tx pgx.Tx, schema string) ([]schemaObject, error) {
	rows, err := tx.Query(ctx, objectsSQL, schema)
	if err != nil {
		return nil, fmt.Errorf("list the objects of schema %s: %w", schema, err)
	}
	objs, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (schemaObject, error) {
		var o schemaObject
		err := row.Scan(&o.kind, &o.name, &o.args, &o.key)
		return o, err
	})
	if err != nil {
		return nil, fmt.Errorf("list the objects of schema %s: %w", schema, err)
	}
	sort.Slice(objs, func(i, j int) bool { return objs[i].key < objs[j].key })
	return objs, nil
}

// moveObjects moves the live schema's read model (the objects the rebuild has too) into
// the archive schema and the rebuild's into the live schema, then drops the rebuild
// schema, which must be empty by then: anything left would have been lost silently.
// The version sequence has no counterpart in the rebuild and stays.
func (r *rebuild) moveObjects(ctx context.Context, tx pgx.Tx) error {
	rebuilt, err := schemaObjects(ctx, tx, r.schema)
	if err != nil {
		return err
	}
	current, err := schemaObjects(ctx, tx, r.liveSchema)
	if err != nil {
		return err
	}
	liveByKey := map[string]schemaObject{}
	for _, o := range current {
		liveByKey[o.key] = o
	}
	move := func(o schemaObject, from, to string) error {
		sql := `ALTER ` + o.kind + ` ` + ident(from) + `.` + o.name + o.args + ` SET SCHEMA ` + ident(to)
		if _, err := tx.Exec(ctx, sql); err != nil {
			return fmt.Errorf("swap: move %s %s%s from %s to %s: %w", strings.ToLower(o.kind), o.name, o.args, from, to, err)
		}
		return nil
	}
	if _, err := tx.Exec(ctx, `CREATE SCHEMA `+ident(r.archive)); err != nil {
		return fmt.Errorf("swap: create schema %s: %w", r.archive, err)
	}
	for _, o := range rebuilt {
		if old, ok := liveByKey[o.key]; ok {
			if err := move(old, r.liveSchema, r.archive); err != nil {
				return err
			}
		}
	}
	for _, o := range rebuilt {
		if err := move(o, r.schema, r.liveSchema); err != nil {
			return err
		}
	}
	if _, err := tx.Exec(ctx, `DROP SCHEMA `+ident(r.schema)+` RESTRICT`); err != nil {
		return fmt.Errorf("swap: drop the emptied schema %s (an object the swap does not move is left in it): %w", r.schema, err)
	}
	return nil
}

// copyGrants gives each rebuilt relation the privileges its live counterpart grants to
// roles other than its owner: roles that read the tables keep reading them.
func (r *rebuild) copyGrants(ctx context.Context, tx pgx.Tx) error {
	rows, err := tx.Query(ctx, `
		SELECT quote_ident(c.relname), a.privilege_type, a.is_grantable,
		       CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(a.grantee)) END
		FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		CROSS JOIN LATERAL aclexplode(c.relacl) a
		WHERE n.nspname = $1 AND c.relkind IN ('r', 'p', 'v', 'm', 'f') AND a.grantee <> c.relowner
		  AND EXISTS (SELECT 1 FROM pg_class c2 JOIN pg_namespace n2 ON n2.oid = c2.relnamespace
		              WHERE n2.nspname = $2 AND c2.relname = c.relname AND c2.relkind IN ('r', 'p', 'v', 'm', 'f'))
		ORDER BY 1, 2, 4`, r.liveSchema, r.schema)
	if err != nil {
		return fmt.Errorf("swap: read the live tables' privileges: %w", err)
	}
	var grants []string
	for rows.Next() {
		var rel, priv, grantee string
		var grantable bool
		if err := rows.Scan(&rel, &priv, &grantable, &grantee); err != nil {
			rows.Close()
			return fmt.Errorf("swap: read the live tables' privileges: %w", err)
		}
		g := `GRANT ` + priv + ` ON ` + ident(r.schema) + `.` + rel + ` TO ` + grantee
		if grantable {
			g += ` WITH GRANT OPTION`
		}
		grants = append(grants, g)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("swap: read the live tables' privileges: %w", err)
	}
	for _, g := range grants {
		if _, err := tx.Exec(ctx, g); err != nil {
			return fmt.Errorf("swap: %s: %w", g, err)
		}
	}
	return nil
}

// dropArchive drops the old tables, waiting at most LockTimeout for each lock.
func (r *rebuild) dropArchive(ctx context.Context) error {
	tx, err := r.live.Begin(ctx)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	if _, err := tx.Exec(ctx, `SELECT set_config('lock_timeout', $1, true)`, fmt.Sprintf("%dms", r.cfg.LockTimeout.Milliseconds())); err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, `DROP SCHEMA `+ident(r.archive)+` CASCADE`); err != nil {
		return err
	}
	return tx.Commit(ctx)
}
