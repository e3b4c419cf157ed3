package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"

	"github.com/convsync/convsync/app"
	"github.com/convsync/convsync/ingest"
	"github.com/convsync/convsync/ingest/graph"
	"github.com/convsync/convsync/internal/logging"
	"github.com/convsync/convsync/internal/pg"
)

// runPages is `convsync pages import --user-token T`: the user's token lists the Pages it
// manages and their Page tokens (/me/accounts), stored in facebook_pages.
func runPages(ctx context.Context, args []string) error {
	if len(args) == 0 || args[0] != "import" {
		return errors.New("usage: convsync pages import --user-token TOKEN (or env META_USER_TOKEN)")
	}
	s := app.Defaults()
	fs := flag.NewFlagSet("convsync pages import", flag.ContinueOnError)
	b := app.Bind(fs, &s)
	var userToken string
	b.Secret(&userToken, "user-token", "a user access token of someone who manages the Pages", "META_USER_TOKEN")
	if err := b.Err(); err != nil {
		return err
	}
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if userToken == "" {
		return errors.New("--user-token (or META_USER_TOKEN) is required")
	}
	for _, v := range []func() error{s.PG.Validate, s.Graph.Validate} {
		if err := v(); err != nil {
			return fmt.Errorf("invalid configuration: %w", err)
		}
	}
	log, err := logging.New(s.Log, os.Stderr)
	if err != nil {
		return err
	}
	gc, err := graph.New(s.Graph, nil, nil, log)
	if err != nil {
		return err
	}
	pool, err := pg.NewPool(ctx, s.PG, s.PG.URL)
	if err != nil {
		return err
	}
	defer pool.Close()
	n, err := ingest.ImportPages(ctx, gc, pool, userToken)
	if err != nil {
		return err
	}
	fmt.Printf("imported %d pages (tokens stored in facebook_pages)\n", n)
	return nil
}
