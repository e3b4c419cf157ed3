package cache

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// Redis stores entries as hashes {v: version, d: value} and markers as strings, through
// a go-redis UniversalClient: one node, Sentinel, or a Cluster (the page hash tag keeps a
// script's two keys in one slot).
type Redis struct {
	c      redis.UniversalClient
	prefix string
}

// NewRedis uses c for keys under prefix (Keys.Prefix); the caller owns c.
func NewRedis(c redis.UniversalClient, prefix string) *Redis { return &Redis{c: c, prefix: prefix} }

// Kind implements Store.
func (r *Redis) Kind() string { return "redis" }

// Ping implements Store.
func (r *Redis) Ping(ctx context.Context) error { return r.c.Ping(ctx).Err() }

// setScript writes the entry when it is at least as new as the marker and newer than
// the entry there.
var setScript = redis.NewScript(`
local m = tonumber(redis.call('GET', KEYS[2]) or '0')
local v = tonumber(ARGV[1])
if v < m then return 0 end
local cur = redis.call('HGET', KEYS[1], 'v')
if cur and tonumber(cur) >= v then return 0 end
redis.call('HSET', KEYS[1], 'v', ARGV[1], 'd', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1`)

// markScript raises a marker, never lowers it.
var markScript = redis.NewScript(`
local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
if tonumber(ARGV[1]) > cur then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0`)

// Get implements Store: the entry and its marker in one pipelined round trip (no
// script: reads need no atomicity, and a pipeline costs Redis less than Lua).
func (r *Redis) Get(ctx context.Context, key, marker string) (Entry, bool, error) {
	var entry *redis.SliceCmd
	var mark *redis.StringCmd
	_, err := r.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		entry = p.HMGet(ctx, key, "v", "d")
		mark = p.Get(ctx, marker)
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return Entry{}, false, fmt.Errorf("redis get: %w", err)
	}
	vals := entry.Val()
	if len(vals) != 2 || vals[0] == nil {
		return Entry{}, false, nil
	}
	vs, _ := vals[0].(string)
	d, _ := vals[1].(string)
	v, err := strconv.ParseInt(vs, 10, 64)
	if err != nil {
		return Entry{}, false, fmt.Errorf("redis get: version %q: %w", vs, err)
	}
	if m, err := mark.Int64(); err == nil && v < m {
		return Entry{}, false, nil
	}
	return Entry{Version: v, Value: []byte(d)}, true, nil
}

// Set implements Store.
func (r *Redis) Set(ctx context.Context, key, marker string, e Entry, ttl time.Duration) (bool, error) {
	n, err := setScript.Run(ctx, r.c, []string{key, marker}, e.Version, e.Value, ttl.Milliseconds()).Int()
	if err != nil {
		return false, fmt.Errorf("redis set: %w", err)
	}
	return n == 1, nil
}

// channel is where markers are published for the near caches of every process.
func (r *Redis) channel() string { return r.prefix + "marks" }

// ErrPublish wraps a failure to announce markers on the marker channel after they were
// raised in Redis: the markers hold, only other processes' near caches did not hear.
var ErrPublish = errors.New("markers raised but not published")

// publishChunk bounds the markers of one message, so that no message nears Redis's
// pub/sub output buffer limits or holds a near cache's lock for long.
const publishChunk = 500

// Mark implements Store: one pipeline for all markers and, once they are raised (never
// before: a near cache must not hear of a marker Redis does not have yet), messages on
// the marker channel for every process's near cache.
func (r *Redis) Mark(ctx context.Context, marks []Mark, ttl time.Duration) error {
	if len(marks) == 0 {
		return nil
	}
	// Load the script once so the pipeline can use EVALSHA everywhere (a Cluster too).
	if err := markScript.Load(ctx, r.c).Err(); err != nil {
		return fmt.Errorf("redis mark: load script: %w", err)
	}
	cmds, err := r.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, m := range marks {
			markScript.EvalSha(ctx, p, []string{m.Key}, m.Version, ttl.Milliseconds())
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("redis mark %d keys: %w", len(marks), err)
	}
	for _, c := range cmds {
		if err := c.Err(); err != nil {
			return fmt.Errorf("redis mark: %w", err)
		}
	}
	_, err = r.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i := 0; i < len(marks); i += publishChunk {
			p.Publish(ctx, r.channel(), encodeMarks(marks[i:min(i+publishChunk, len(marks))]))
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("%w: %w", ErrPublish, err)
	}
	return nil
}

// Flush implements Store: SCAN and DEL under the prefix (on every master of a Cluster).
func (r *Redis) Flush(ctx context.Context) error {
	flush := func(ctx context.Context, c redis.UniversalClient) error {
		iter := c.Scan(ctx, 0, r.prefix+"*", 1000).Iterator()
		var batch []string
		for iter.Next(ctx) {
			batch = append(batch, iter.Val())
			if len(batch) == 500 {
				if err := del(ctx, c, batch); err != nil {
					return err
				}
				batch = batch[:0]
			}
		}
		if err := iter.Err(); err != nil {
			return err
		}
		return del(ctx, c, batch)
	}
	var err error
	if cc, ok := r.c.(*redis.ClusterClient); ok {
		err = cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error { return flush(ctx, c) })
	} else {
		err = flush(ctx, r.c)
	}
	if err != nil {
		return err
	}
	return r.c.Publish(ctx, r.channel(), flushMessage).Err()
}

// watchHeartbeat is how often Watch pings its subscription when nothing arrives; more
// than two intervals without a message or a pong (detected within three) count as a
// broken stream.
const watchHeartbeat = 500 * time.Millisecond

// Watch implements Watcher with a subscription to the marker channel. Each time it is
// (re)subscribed it calls Ready; an error, or silence past the heartbeat, calls Lost and
// subscribes again.
func (r *Redis) Watch(ctx context.Context, h WatchHandler) error {
	const minBackoff = 50 * time.Millisecond
	backoff := minBackoff
	for ctx.Err() == nil {
		start := time.Now()
		err := r.watch(ctx, h)
		if ctx.Err() != nil {
			return nil
		}
		if time.Since(start) > time.Minute {
			backoff = minBackoff // it was healthy a while: a new break starts afresh
		}
		h.Lost(err)
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		backoff = min(2*backoff, 2*time.Second)
	}
	return nil
}

func (r *Redis) watch(ctx context.Context, h WatchHandler) error {
	ps := r.c.Subscribe(ctx)
	defer ps.Close()
	stop := context.AfterFunc(ctx, func() { _ = ps.Close() }) // ends a read in progress
	defer stop()
	if err := ps.Subscribe(ctx, r.channel()); err != nil {
		return fmt.Errorf("subscribe %s: %w", r.channel(), err)
	}
	heard := time.Now()
	for {
		msg, err := ps.ReceiveTimeout(ctx, watchHeartbeat)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			var ne interface{ Timeout() bool }
			if !errors.As(err, &ne) || !ne.Timeout() {
				return fmt.Errorf("receive: %w", err)
			}
			if time.Since(heard) > 2*watchHeartbeat {
				return errors.New("no answer from redis within the heartbeat")
			}
			if err := ps.Ping(ctx); err != nil {
				return fmt.Errorf("ping: %w", err)
			}
			continue
		}
		heard = time.Now()
		switch m := msg.(type) {
		case *redis.Subscription:
			if m.Kind == "subscribe" {
				h.Ready()
			}
		case *redis.Message:
			if marks, ok := decodeMarks(m.Payload); ok {
				h.Marks(marks)
			} else {
				h.Reset()
			}
		}
	}
}

// del deletes keys one by one in a pipeline (keys of several slots in a Cluster).
func del(ctx context.Context, c redis.UniversalClient, keys []string) error {
	if len(keys) == 0 {
		return nil
	}
	_, err := c.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, k := range keys {
			p.Del(ctx, k)
		}
		return nil
	})
	return err
}
