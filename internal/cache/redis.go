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

// Mark implements Store: one pipeline for all markers.
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
	if cc, ok := r.c.(*redis.ClusterClient); ok {
		return cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error { return flush(ctx, c) })
	}
	return flush(ctx, r.c)
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
