package main

import (
	"context"
	"fmt"
	"os"
	"text/tabwriter"

	"github.com/jackc/pgx/v5/stdlib"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/convsync/convsync/app"
	"github.com/convsync/convsync/internal/kafka"
	"github.com/convsync/convsync/internal/pg"
	"github.com/convsync/convsync/migrations"
)

// runMigrate applies the migrations and creates the topics, or with `status` lists both.
func runMigrate(ctx context.Context, args []string) error {
	s, err := app.Parse("migrate", args, func(s *app.Settings) error { return s.PG.Validate() },
		func(s *app.Settings) error { return s.Kafka.Validate() })
	if err != nil {
		return err
	}
	statusOnly := len(s.Args) > 0 && s.Args[0] == "status"
	if len(s.Args) > 0 && !statusOnly {
		return fmt.Errorf("unknown argument %q: want nothing or `status`", s.Args[0])
	}

	pool, err := pg.NewPool(ctx, s.PG, s.PG.URL)
	if err != nil {
		return err
	}
	defer pool.Close()
	db := stdlib.OpenDBFromPool(pool)
	defer db.Close()

	cl, err := kgo.NewClient(s.Kafka.Opts()...)
	if err != nil {
		return fmt.Errorf("kafka client: %w", err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)

	var topics []kafka.TopicState
	if statusOnly {
		names := make([]string, 0, 3)
		for _, t := range s.Kafka.Topics() {
			names = append(names, t.Name)
		}
		if topics, err = kafka.DescribeTopics(ctx, adm, names...); err != nil {
			return err
		}
	} else {
		applied, err := migrations.Up(ctx, db)
		if err != nil {
			return err
		}
		fmt.Printf("migrations: %d applied now\n", len(applied))
		if topics, err = kafka.EnsureTopics(ctx, adm, s.Kafka); err != nil {
			return err
		}
	}

	list, err := migrations.List(ctx, db)
	if err != nil {
		return err
	}
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "MIGRATION\tNAME\tSTATE")
	for _, m := range list {
		state := "pending"
		if m.Applied {
			state = "applied"
		}
		fmt.Fprintf(w, "%d\t%s\t%s\n", m.Version, m.Name, state)
	}
	fmt.Fprintln(w, "\nTOPIC\tPARTITIONS\tREPLICATION\tSTATE")
	for _, t := range topics {
		state := "exists"
		if t.Created {
			state = "created"
		}
		fmt.Fprintf(w, "%s\t%d\t%d\t%s\n", t.Name, t.Partitions, t.ReplicationFactor, state)
	}
	return w.Flush()
}
