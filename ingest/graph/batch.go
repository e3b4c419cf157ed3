package graph

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"golang.org/x/sync/errgroup"
)

// MaxBatch is the most operations Graph takes in one batch request.
const MaxBatch = 50

// Op is one operation of a batch request.
type Op struct {
	Method      string `json:"method"`         // GET when empty
	RelativeURL string `json:"relative_url"`   // path and query after the version
	Body        string `json:"body,omitempty"` // POST/PUT: URL-encoded
}

// Result is the answer to one Op.
type Result struct {
	Code   int
	Header http.Header
	// Body is the operation's JSON body (Graph sends it as a JSON string; this is the
	// string's content).
	Body json.RawMessage
	// Err is the *APIError of an answer other than 200, or ErrIncomplete for an
	// operation that came back null more than MaxRetries times.
	Err error
}

// Decode decodes Body into v.
func (r Result) Decode(v any) error {
	if r.Err != nil {
		return r.Err
	}
	return json.Unmarshal(r.Body, v)
}

// Batch runs ops in batch requests of at most MaxBatch operations, and no more than the
// token's window allows (each operation counts as a call), in parallel up to
// MaxConcurrency, and returns their results in the order of ops. Operations that came
// back null, rate limited or with a transient error are retried (at most MaxRetries
// times); other failures are in their Result's Err. The error is for the batch as a
// whole, e.g. an expired token (IsTokenError).
func (c *Client) Batch(ctx context.Context, token string, ops []Op) ([]Result, error) {
	results := make([]Result, len(ops))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(c.cfg.MaxConcurrency)
	size := min(MaxBatch, c.pageCalls)
	for lo := 0; lo < len(ops); lo += size {
		hi := min(lo+size, len(ops))
		g.Go(func() error { return c.batch(gctx, token, ops[lo:hi], results[lo:hi]) })
	}
	if err := g.Wait(); err != nil {
		return nil, fmt.Errorf("batch of %d operations: %w", len(ops), err)
	}
	return results, nil
}

// entry is one element of a batch answer.
type entry struct {
	Code    int `json:"code"`
	Headers []struct {
		Name  string `json:"name"`
		Value string `json:"value"`
	} `json:"headers"`
	Body *string `json:"body"`
}

// batch runs at most MaxBatch ops, filling out, and retries the operations that did not
// complete.
func (c *Client) batch(ctx context.Context, token string, ops []Op, out []Result) error {
	l := c.scope(token)
	pending := make([]int, len(ops))
	for i := range pending {
		pending[i] = i
	}
	for attempt := 0; len(pending) > 0; attempt++ {
		sent := make([]Op, len(pending))
		for i, j := range pending {
			sent[i] = ops[j]
			if sent[i].Method == "" {
				sent[i].Method = http.MethodGet
			}
		}
		b, err := json.Marshal(sent)
		if err != nil {
			return fmt.Errorf("encode batch: %w", err)
		}
		resp, err := c.call(ctx, request{kind: kindBatch, method: http.MethodPost,
			form: map[string][]string{"batch": {string(b)}, "include_headers": {"true"}}, token: token, calls: len(sent)})
		if err != nil {
			return err
		}
		var entries []json.RawMessage
		if err := json.Unmarshal(resp.body, &entries); err != nil {
			return fmt.Errorf("decode batch answer: %w", err)
		}
		if len(entries) != len(sent) {
			return fmt.Errorf("decode batch answer: %d entries for %d operations", len(entries), len(sent))
		}
		last := attempt >= c.cfg.MaxRetries
		var retry []int
		transient := false
		for i, raw := range entries {
			j := pending[i]
			r, err := decodeEntry(raw)
			switch {
			case err != nil:
				return err
			case r == nil:
				c.metrics.ops.WithLabelValues(outcomeNull).Inc()
				out[j] = Result{Err: ErrIncomplete}
				transient = true
				retry = append(retry, j)
				continue
			}
			c.observe(l, r.Header)
			c.metrics.ops.WithLabelValues(outcome(r.Err)).Inc()
			out[j] = *r
			var e *APIError
			switch {
			case !errors.As(r.Err, &e):
			case isRateLimitCode(e.Code):
				if !last {
					c.rateLimited(l, e, attempt)
				}
				retry = append(retry, j)
			case isTransient(e):
				transient = true
				retry = append(retry, j)
			}
		}
		if last {
			return nil
		}
		if transient {
			if err := sleep(ctx, backoff(attempt, c.cfg.BackoffBase, c.cfg.BackoffMax)); err != nil {
				return err
			}
		}
		pending = retry
	}
	return nil
}

// decodeEntry decodes a batch entry; nil for a null entry. The body is a JSON string
// holding JSON: it is decoded twice.
func decodeEntry(raw json.RawMessage) (*Result, error) {
	if string(raw) == "null" {
		return nil, nil
	}
	var e entry
	if err := json.Unmarshal(raw, &e); err != nil {
		return nil, fmt.Errorf("decode batch entry: %w", err)
	}
	r := &Result{Code: e.Code, Header: http.Header{}}
	for _, h := range e.Headers {
		r.Header.Add(h.Name, h.Value)
	}
	if e.Body != nil {
		r.Body = json.RawMessage(*e.Body)
		if !json.Valid(r.Body) {
			return nil, fmt.Errorf("decode batch entry: body of code %d is not JSON", e.Code)
		}
	}
	if e.Code != http.StatusOK {
		r.Err = decodeError(e.Code, r.Header, r.Body)
	}
	return r, nil
}
