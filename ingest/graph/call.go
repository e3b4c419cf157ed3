package graph

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// maxBody bounds an answer read into memory: nested expansions can be large.
const maxBody = 64 << 20

// request is one Graph API call: a GET of a node or edge, or a batch POST.
type request struct {
	kind   string     // metric label
	method string     // GET or POST
	path   string     // relative to the version root, escaped
	query  url.Values // GET parameters
	form   url.Values // POST fields; access_token is added
	token  string
	calls  int // API calls it counts for against the rate limits (batch: its operations)
	// shrink, when set, asks for less data (a smaller limit in query) after a code 1
	// answer, "Please reduce the amount of data you're asking for"; it reports whether it
	// could. The request is then made again at once.
	shrink func() bool
}

// response is a 200 answer.
type response struct {
	header http.Header
	body   []byte
}

// call makes req, pacing it by the token's limiter and retrying transient failures and
// rate-limit answers at most MaxRetries times. Other error answers come back at once as
// *APIError.
func (c *Client) call(ctx context.Context, req request) (*response, error) {
	if req.token == "" {
		return nil, errNoToken
	}
	l := c.scope(req.token)
	for attempt := 0; ; attempt++ {
		s, err := c.throttle(ctx, l, max(1, req.calls))
		if err != nil {
			return nil, err
		}
		resp, header, answered, err := c.roundTrip(ctx, req)
		if answered.IsZero() {
			answered = time.Now()
		}
		s.done(answered)
		if header != nil {
			c.observe(l, header)
		}
		c.metrics.requests.WithLabelValues(req.kind, outcome(err)).Inc()
		if err == nil {
			return resp, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		var e *APIError
		isAPI := errors.As(err, &e)
		switch {
		case attempt >= c.cfg.MaxRetries:
			return nil, err
		case isAPI && e.Code == 1 && req.shrink != nil && req.shrink():
			c.log.DebugContext(ctx, "graph asked for less data", "kind", req.kind, "attempt", attempt, "limit", req.query.Get("limit"))
		case isAPI && isRateLimitCode(e.Code):
			d := c.rateLimited(l, e, attempt)
			c.log.DebugContext(ctx, "graph rate limited", "kind", req.kind, "code", e.Code, "attempt", attempt, "pause", d)
		case !isAPI || isTransient(e):
			d := backoff(attempt, c.cfg.BackoffBase, c.cfg.BackoffMax)
			c.log.DebugContext(ctx, "graph call retried", "kind", req.kind, "error", err, "attempt", attempt, "backoff", d)
			if err := sleep(ctx, d); err != nil {
				return nil, err
			}
		default:
			return nil, err
		}
	}
}

// roundTrip makes one HTTP attempt. The header of any answer comes back for the usage
// headers, also with an error, and so does the time the answer began to arrive (zero
// without one).
func (c *Client) roundTrip(ctx context.Context, req request) (_ *response, _ http.Header, answered time.Time, _ error) {
	select {
	case c.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, nil, time.Time{}, ctx.Err()
	}
	defer func() { <-c.sem }()
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()

	u := c.root + req.path
	var body io.Reader
	if req.method == http.MethodPost {
		form := url.Values{}
		for k, v := range req.form {
			form[k] = v
		}
		form.Set("access_token", req.token)
		body = strings.NewReader(form.Encode())
	} else if len(req.query) > 0 {
		u += "?" + req.query.Encode()
	}
	hr, err := http.NewRequestWithContext(ctx, req.method, u, body)
	if err != nil {
		return nil, nil, time.Time{}, fmt.Errorf("build %s request %s: %w", req.kind, req.path, redactURLError(err))
	}
	if req.method == http.MethodPost {
		hr.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	} else {
		hr.Header.Set("Authorization", "OAuth "+req.token)
	}
	hr.Header.Set("Accept", "application/json")
	res, err := c.http.Do(hr)
	if err != nil {
		// *url.Error repeats the URL; keep the operation and the cause only.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, nil, time.Time{}, fmt.Errorf("%s %s: %w", req.method, req.path, err)
	}
	defer res.Body.Close()
	answered = time.Now()
	b, err := io.ReadAll(io.LimitReader(res.Body, maxBody))
	if err != nil {
		return nil, res.Header, answered, fmt.Errorf("read answer of %s %s after %s: %w", req.method, req.path, time.Since(answered), err)
	}
	if res.StatusCode != http.StatusOK {
		return nil, res.Header, answered, decodeError(res.StatusCode, res.Header, b)
	}
	return &response{header: res.Header, body: b}, res.Header, answered, nil
}
