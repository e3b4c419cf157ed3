package migrations

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
)

// UpIn applies every migration to schema, through pool whatever its search_path: each
// migration's transaction sets search_path itself (SET LOCAL), and goose's version table
// is named with its schema. Nothing is kept in a session, so it works behind a
// transaction-mode pooler (PgBouncer, a managed Postgres's pooler), which drops the
// search_path connection parameter and hands each transaction any server connection.
// No advisory lock: it is for a schema one caller has just created for itself (replay's
// rebuild).
func UpIn(ctx context.Context, pool *pgxpool.Pool, schema string) error {
	db := sql.OpenDB(schemaConnector{Connector: stdlib.GetPoolConnector(pool), schema: schema})
	defer db.Close()
	p, err := goose.NewProvider(goose.DialectPostgres, db, files,
		goose.WithTableName(pgx.Identifier{schema, "goose_db_version"}.Sanitize()))
	if err != nil {
		return fmt.Errorf("migrations: %w", err)
	}
	if _, err := p.Up(ctx); err != nil {
		return fmt.Errorf("apply migrations to schema %s: %w", schema, err)
	}
	return nil
}

// schemaConnector gives database/sql connections whose transactions begin with
// search_path set to schema, for that transaction only.
type schemaConnector struct {
	driver.Connector
	schema string
}

func (c schemaConnector) Connect(ctx context.Context) (driver.Conn, error) {
	conn, err := c.Connector.Connect(ctx)
	if err != nil {
		return nil, err
	}
	sc, ok := conn.(*stdlib.Conn)
	if !ok {
		_ = conn.Close()
		return nil, fmt.Errorf("migrations: a %T is not a pgx connection", conn)
	}
	return schemaConn{Conn: sc, schema: c.schema}, nil
}

// schemaConn is a pgx database/sql connection whose every transaction starts in schema.
type schemaConn struct {
	*stdlib.Conn
	schema string
}

func (c schemaConn) BeginTx(ctx context.Context, opts driver.TxOptions) (driver.Tx, error) {
	tx, err := c.Conn.BeginTx(ctx, opts)
	if err != nil {
		return nil, err
	}
	if _, err := c.Conn.Conn().Exec(ctx, `SELECT set_config('search_path', $1, true)`, pgx.Identifier{c.schema}.Sanitize()); err != nil {
		_ = tx.Rollback()
		return nil, fmt.Errorf("set search_path to %s: %w", c.schema, err)
	}
	return tx, nil
}
