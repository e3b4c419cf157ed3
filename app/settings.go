package app

import (
	"errors"
	"flag"
	"fmt"
	"os"

	"github.com/convsync/convsync/ingest"
	"github.com/convsync/convsync/ingest/backfill"
	"github.com/convsync/convsync/ingest/graph"
	"github.com/convsync/convsync/internal/cache"
	"github.com/convsync/convsync/internal/config"
	"github.com/convsync/convsync/internal/kafka"
	"github.com/convsync/convsync/internal/logging"
	"github.com/convsync/convsync/internal/pg"
	"github.com/convsync/convsync/internal/server"
	"github.com/convsync/convsync/processor"
	"github.com/convsync/convsync/projector"
	"github.com/convsync/convsync/projector/readapi"
)

// Settings is every component's configuration. This file is the one place that maps
// flags and environment variables onto them; the README's configuration table follows it.
type Settings struct {
	Log       logging.Config
	HTTP      server.Config
	Kafka     kafka.Config
	PG        pg.Config
	Cache     cache.Config
	API       readapi.Config
	Ingest    ingest.Config
	Graph     graph.Config
	Backfill  backfill.Config
	Processor processor.Config
	Projector projector.Config

	Args []string // positional arguments after the flags (`convsync migrate status`)
}

// Defaults returns every component's defaults, before flags and environment.
func Defaults() Settings {
	return Settings{
		Log:       logging.Defaults(),
		HTTP:      server.Defaults(),
		Kafka:     kafka.Defaults(),
		PG:        pg.Defaults(),
		Cache:     cache.Defaults(),
		API:       readapi.Defaults(),
		Ingest:    ingest.Defaults(),
		Graph:     graph.Defaults(),
		Backfill:  backfill.Defaults(),
		Processor: processor.Defaults(),
		Projector: projector.Defaults(),
	}
}

// Bind registers every flag of s on fs, with environment variables as defaults; the
// commands of cmd/convsync that are not roles add their own flags to fs.
func Bind(fs *flag.FlagSet, s *Settings) *config.Binder {
	b := config.NewBinder(fs, os.LookupEnv)
	b.String(&s.Log.Level, "log-level", "log level: debug, info, warn, error", "LOG_LEVEL")
	b.String(&s.Log.Format, "log-format", "log format: auto (text on a terminal), json, text", "LOG_FORMAT")

	b.String(&s.HTTP.Addr, "http-addr", "listen address for the role's routes, /metrics, /healthz, /readyz", "HTTP_ADDR")
	b.Duration(&s.HTTP.ShutdownTimeout, "http-shutdown-timeout", "how long in-flight requests may take to finish at shutdown", "HTTP_SHUTDOWN_TIMEOUT")
	b.Duration(&s.HTTP.ReadTimeout, "http-read-timeout", "how long reading a whole request (headers and body) may take; a slower client is cut off", "HTTP_READ_TIMEOUT")
	b.Duration(&s.HTTP.WriteTimeout, "http-write-timeout", "how long a request may take from the end of its headers to the end of its answer", "HTTP_WRITE_TIMEOUT")

	b.Strings(&s.Kafka.Brokers, "kafka-brokers", "Kafka bootstrap brokers, comma-separated", "KAFKA_BROKERS")
	b.String(&s.Kafka.ClientID, "kafka-client-id", "Kafka client id", "KAFKA_CLIENT_ID")
	b.String(&s.Kafka.EventsTopic, "events-topic", "topic of the event log", "KAFKA_EVENTS_TOPIC")
	b.String(&s.Kafka.DeltasTopic, "deltas-topic", "topic of the compacted deltas", "KAFKA_DELTAS_TOPIC")
	b.String(&s.Kafka.DLQTopic, "dlq-topic", "dead-letter topic", "KAFKA_DLQ_TOPIC")
	b.Int(&s.Kafka.Partitions, "kafka-partitions", "partitions of each topic that convsync migrate creates", "KAFKA_PARTITIONS")
	b.Duration(&s.Kafka.SessionTimeout, "kafka-session-timeout", "how long a consumer group waits for a crashed member before reassigning its partitions", "KAFKA_SESSION_TIMEOUT")
	b.Duration(&s.Kafka.FetchMaxWait, "kafka-fetch-max-wait", "longest a consumer's fetch waits for KAFKA_FETCH_MIN_BYTES: fewer, larger batches at low rates (CPU) against up to this much latency a stage", "KAFKA_FETCH_MAX_WAIT")
	b.Int(&s.Kafka.FetchMinBytes, "kafka-fetch-min-bytes", "bytes a consumer's fetch waits for, at most KAFKA_FETCH_MAX_WAIT", "KAFKA_FETCH_MIN_BYTES")
	b.Int(&s.Kafka.ReplicationFactor, "kafka-replication-factor", "replication factor of each topic that convsync migrate creates", "KAFKA_REPLICATION_FACTOR")

	b.Secret(&s.PG.URL, "database-url", "PostgreSQL connection string (primary)", "DATABASE_URL")
	b.Secret(&s.PG.ReadURL, "database-read-url", "PostgreSQL connection string of a read replica for the read API", "DATABASE_READ_URL")
	b.Int(&s.PG.PoolMax, "pg-pool-max", "maximum connections per pool", "PG_POOL_MAX", "SUPABASE_POOL_MAX")
	b.Int(&s.PG.PoolMin, "pg-pool-min", "connections each pool keeps open", "PG_POOL_MIN", "SUPABASE_POOL_MIN")
	b.String(&s.PG.ExecMode, "pg-exec-mode", "statement mode: cache_statement, cache_describe, describe_exec, exec, simple_protocol (for poolers without prepared statements)", "PG_EXEC_MODE")

	b.Secret(&s.Ingest.VerifyToken, "webhook-verify-token", "token of Meta's subscription handshake (GET /api/webhook)", "WEBHOOK_VERIFY_TOKEN")
	b.Secret(&s.Ingest.AppSecret, "meta-app-secret", "app secret that signs webhooks (X-Hub-Signature-256)", "META_APP_SECRET")
	b.Int64(&s.Ingest.MaxBodyBytes, "webhook-max-body-bytes", "largest webhook body accepted; larger gets 413", "WEBHOOK_MAX_BODY_BYTES")
	b.Duration(&s.Ingest.ProduceTimeout, "webhook-produce-timeout", "how long a webhook waits for Kafka before answering 503", "WEBHOOK_PRODUCE_TIMEOUT")

	b.String(&s.Graph.BaseURL, "graph-api-url", "Graph API base URL (scheme and host; the simulator's in tests)", "GRAPH_API_URL")
	b.String(&s.Graph.Version, "graph-api-version", "Graph API version in paths", "GRAPH_API_VERSION")
	b.Float64(&s.Graph.PageRate, "graph-api-page-rate", "Graph calls per second per page token (Meta allows about 2)", "GRAPH_API_PAGE_RATE")
	b.Int(&s.Graph.MaxConcurrency, "graph-api-max-concurrency", "Graph HTTP requests in flight at most", "GRAPH_API_MAX_CONCURRENCY")
	b.Duration(&s.Graph.PageWindow, "graph-api-page-window", "window the page rate is kept over: at most rate × window calls in any window", "GRAPH_API_PAGE_WINDOW")
	b.Duration(&s.Graph.PageWindowMargin, "graph-api-page-window-margin", "added to each window against skew between Meta's clocks", "GRAPH_API_PAGE_WINDOW_MARGIN")
	b.Duration(&s.Graph.Timeout, "graph-api-timeout", "one Graph HTTP attempt at most", "GRAPH_API_TIMEOUT")
	b.Int(&s.Graph.MaxRetries, "graph-api-max-retries", "retries of one Graph call or batch operation", "GRAPH_API_MAX_RETRIES")
	b.Int(&s.Graph.PageSize, "graph-api-page-size", "limit of conversations listings", "GRAPH_API_PAGE_SIZE")
	b.Duration(&s.Graph.BackoffBase, "graph-api-backoff-base", "first backoff after a transient Graph failure", "GRAPH_API_BACKOFF_BASE")
	b.Duration(&s.Graph.BackoffMax, "graph-api-backoff-max", "longest backoff after transient Graph failures", "GRAPH_API_BACKOFF_MAX")
	b.Duration(&s.Graph.RateLimitBase, "graph-api-rate-limit-backoff-base", "first pause after a rate-limit code without estimated_time_to_regain_access", "GRAPH_API_RATE_LIMIT_BACKOFF_BASE")
	b.Duration(&s.Graph.RateLimitMax, "graph-api-rate-limit-backoff-max", "longest such pause", "GRAPH_API_RATE_LIMIT_BACKOFF_MAX")
	b.Int(&s.Graph.UsageHigh, "graph-api-usage-high", "usage percentage (X-App-Usage, X-Business-Use-Case-Usage) from which the client slows down", "GRAPH_API_USAGE_HIGH")
	b.Duration(&s.Graph.UsagePause, "graph-api-usage-pause", "pause of a token at 100% usage (a share of it from GRAPH_API_USAGE_HIGH)", "GRAPH_API_USAGE_PAUSE")
	b.Int(&s.Graph.ProfileCacheSize, "graph-api-profile-cache-size", "user names remembered", "GRAPH_API_PROFILE_CACHE_SIZE")

	b.String(&s.Processor.Group, "processor-group", "consumer group of the processor", "PROCESSOR_GROUP")
	b.String(&s.Processor.Delivery, "processor-delivery", "at-least-once (deltas produced, offsets committed after them) or exactly-once (a Kafka transaction per batch)", "PROCESSOR_DELIVERY")
	b.String(&s.Processor.TransactionalID, "processor-transactional-id", "transactional id of this processor instance (unique per instance; default from group, host and pid)", "PROCESSOR_TRANSACTIONAL_ID")
	b.Int(&s.Processor.MaxPollRecords, "processor-max-poll-records", "events per processor batch (and transaction) at most", "PROCESSOR_MAX_POLL_RECORDS")
	b.Duration(&s.Processor.TransactionTimeout, "processor-transaction-timeout", "the broker aborts a processor transaction not ended by then", "PROCESSOR_TRANSACTION_TIMEOUT")
	b.Int(&s.Processor.MaxDeltaBytes, "processor-max-delta-bytes", "a page's delta larger than this is split into several records", "PROCESSOR_MAX_DELTA_BYTES")

	b.String(&s.Projector.Group, "projector-group", "consumer group of the projector (offsets kept in Postgres)", "PROJECTOR_GROUP")
	b.Int(&s.Projector.BatchRecords, "projector-batch-records", "deltas per projector transaction at most", "PROJECTOR_BATCH_RECORDS")
	b.Int(&s.Projector.BatchBytes, "projector-batch-bytes", "delta bytes per projector transaction at most", "PROJECTOR_BATCH_BYTES")
	b.Duration(&s.Projector.Linger, "projector-linger", "how long a partition waits to fill a batch", "PROJECTOR_LINGER")
	b.Duration(&s.Projector.GatherWait, "projector-gather-wait", "how long a writer waits for the other partitions of a fetch to hand in their batches (0: not at all)", "PROJECTOR_GATHER_WAIT")
	b.Int(&s.Projector.Writers, "projector-writers", "projector transactions in parallel; each commits the waiting batches of its partitions together", "PROJECTOR_WRITERS")

	b.Secret(&s.Cache.URL, "redis-url", "Redis URL (redis://host:port/db); several comma-separated addresses mean a Redis Cluster, ?master=name Sentinel; empty uses the in-memory cache", "REDIS_URL")
	b.Duration(&s.Cache.TTL, "cache-ttl", "how long cache entries live", "CACHE_TTL")
	b.String(&s.Cache.Prefix, "cache-prefix", "prefix of every cache key", "CACHE_PREFIX")
	b.Int(&s.Cache.MemoryMaxKeys, "cache-memory-max-keys", "bound of the in-memory cache", "CACHE_MEMORY_MAX_KEYS")
	b.Duration(&s.Cache.NearTTL, "cache-near-ttl", "with Redis: how long the in-process near cache (kept current through Redis pub/sub) may keep an entry; 0 turns it off", "CACHE_NEAR_TTL")
	b.Int(&s.Cache.NearMaxKeys, "cache-near-max-keys", "bound of the near cache", "CACHE_NEAR_MAX_KEYS")
	b.Duration(&s.Cache.MaxStaleness, "cache-max-staleness", "how long a cache entry can outlive its rows when a marker was lost (a crash after COMMIT, a Redis failover): hits are checked against Postgres this often", "CACHE_MAX_STALENESS")

	b.Secrets(&s.API.Tokens, "api-tokens", "bearer tokens the read API accepts, comma-separated", "API_TOKENS")
	b.Int(&s.API.DefaultLimit, "api-default-limit", "items per page when no limit is given", "API_DEFAULT_LIMIT")
	b.Int(&s.API.MaxLimit, "api-max-limit", "largest limit accepted", "API_MAX_LIMIT")
	b.Int(&s.API.RefreshMax, "api-cache-refresh-max", "entries the read API keeps warm: one it served in the last minute is rebuilt in the background when its page or conversation changes (0: none; a change only invalidates)", "API_CACHE_REFRESH_MAX")
	b.Duration(&s.API.MaxAge, "api-cache-max-age", "Cache-Control max-age of read API answers (for CDNs)", "API_CACHE_MAX_AGE")
	return b
}

// Parse binds every flag of `convsync name` onto the defaults, parses args (flags win
// over environment variables) and validates what the command needs.
func Parse(name string, args []string, validate ...func(*Settings) error) (*Settings, error) {
	s := Defaults()
	fs := flag.NewFlagSet("convsync "+name, flag.ContinueOnError)
	b := Bind(fs, &s)
	if err := b.Err(); err != nil {
		return nil, err
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		s.Args = fs.Args()
	}
	if err := check(&s, validate); err != nil {
		return nil, err
	}
	return &s, nil
}

// check runs every validation over s and reports all that fail at once.
func check(s *Settings, validate []func(*Settings) error) error {
	var errs []error
	for _, v := range validate {
		errs = append(errs, v(s))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("invalid configuration: %w", err)
	}
	return nil
}

func validatePG(s *Settings) error    { return s.PG.Validate() }
func validateKafka(s *Settings) error { return s.Kafka.Validate() }
