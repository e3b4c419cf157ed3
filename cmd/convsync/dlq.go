package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/convsync/convsync/app"
	"github.com/convsync/convsync/processor"
)

// runDLQ lists the dead-letter topic, or sends chosen records back to their source:
//
//	convsync dlq [list] [--json] [--category C]
//	convsync dlq requeue (--record PARTITION:OFFSET ... | --all) [--category C]
func runDLQ(ctx context.Context, args []string) error {
	sub := "list"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		sub, args = args[0], args[1:]
	}
	if sub != "list" && sub != "requeue" {
		return fmt.Errorf("unknown dlq command %q: want list or requeue", sub)
	}
	s := app.Defaults()
	fs := flag.NewFlagSet("convsync dlq "+sub, flag.ContinueOnError)
	b := app.Bind(fs, &s)
	var asJSON, all bool
	var category string
	var picks []string
	fs.BoolVar(&asJSON, "json", false, "list as JSON")
	fs.StringVar(&category, "category", "", "only records of this category: decode, schema, unknown_type")
	fs.BoolVar(&all, "all", false, "requeue every listed record (with --category, those of it)")
	fs.Func("record", "PARTITION:OFFSET of a record to requeue (repeatable)", func(v string) error { picks = append(picks, v); return nil })
	if err := b.Err(); err != nil {
		return err
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := s.Kafka.Validate(); err != nil {
		return fmt.Errorf("invalid configuration: %w", err)
	}
	opts := append(s.Kafka.Opts(), kgo.ClientID(s.Kafka.ClientID+"-dlq"))
	entries, err := processor.ListDLQ(ctx, opts, s.Kafka.DLQTopic)
	if err != nil {
		return err
	}
	if category != "" {
		kept := entries[:0]
		for _, e := range entries {
			if e.Info.Category == category {
				kept = append(kept, e)
			}
		}
		entries = kept
	}
	if sub == "list" {
		if asJSON {
			enc := json.NewEncoder(os.Stdout)
			enc.SetIndent("", "  ")
			return enc.Encode(entries)
		}
		w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(w, "RECORD\tSOURCE\tKEY\tCATEGORY\tFIELD\tTIME\tREASON")
		for _, e := range entries {
			fmt.Fprintf(w, "%d:%d\t%s/%d@%d\t%s\t%s\t%s\t%s\t%s\n", e.Partition, e.Offset, e.Info.SourceTopic,
				e.Info.SourcePartition, e.Info.SourceOffset, e.Key, e.Info.Category, e.Info.Field,
				e.Info.Time.Format("2006-01-02 15:04:05"), e.Info.Reason)
		}
		fmt.Fprintf(w, "%d dead letters in %s\n", len(entries), s.Kafka.DLQTopic)
		return w.Flush()
	}

	var chosen []processor.DLQEntry
	switch {
	case all && len(picks) > 0:
		return fmt.Errorf("give --all or --record, not both")
	case all:
		chosen = entries
	case len(picks) == 0:
		return fmt.Errorf("requeue needs --record PARTITION:OFFSET (repeatable) or --all")
	default:
		byRecord := map[string]processor.DLQEntry{}
		for _, e := range entries {
			byRecord[strconv.Itoa(int(e.Partition))+":"+strconv.FormatInt(e.Offset, 10)] = e
		}
		for _, p := range picks {
			e, ok := byRecord[p]
			if !ok {
				return fmt.Errorf("no dead letter at %s in %s (see convsync dlq list)", p, s.Kafka.DLQTopic)
			}
			chosen = append(chosen, e)
		}
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return fmt.Errorf("kafka client: %w", err)
	}
	defer cl.Close()
	if err := processor.Requeue(ctx, cl, chosen); err != nil {
		return err
	}
	fmt.Printf("requeued %d records to their source topics\n", len(chosen))
	return nil
}
