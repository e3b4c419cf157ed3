package graphsim

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// maxBatch is the most operations a batch may hold.
const maxBatch = 50

type batchOp struct {
	Method                string          `json:"method"`
	RelativeURL           string          `json:"relative_url"`
	Body                  string          `json:"body"`
	Name                  string          `json:"name"`
	DependsOn             string          `json:"depends_on"`
	OmitResponseOnSuccess json.RawMessage `json:"omit_response_on_success"`
}

type batchHeader struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

type batchEntry struct {
	Code    int           `json:"code"`
	Headers []batchHeader `json:"headers,omitempty"`
	Body    string        `json:"body"`
}

var (
	resultRE  = regexp.MustCompile(`\{result=([^:}]+):([^}]+)\}`)
	versionPR = regexp.MustCompile(`^v[0-9]+\.[0-9]+/`)
)

// batch answers POST /{version}/. Operations run one after another in request order, so
// depends_on and {result=name:$.path} see their parent's answer; each is one API call
// (counted, rate limited, subject to injection). An operation that did not complete
// (injected failure, failed parent, client gone) is null.
func (s *Sim) batch(ctx context.Context, q url.Values, base string) result {
	s.count(func(c *Counts) { c.Batches++ })
	tok := q.Get("access_token")
	if tok == "" {
		return s.fail(errNoToken(), false)
	}
	s.mu.RLock()
	pg := s.byToken[tok]
	expired := pg != nil && pg.expired
	s.mu.RUnlock()
	switch {
	case pg == nil && len(s.users) > 0 && !s.users[tok]:
		return s.fail(errBadToken(), false)
	case expired:
		return s.fail(errExpired(), false)
	}
	var ops []batchOp
	if err := json.Unmarshal([]byte(q.Get("batch")), &ops); err != nil {
		return s.fail(errParam("Param batch must be a valid JSON array of requests"), false)
	}
	switch {
	case len(ops) == 0:
		return s.fail(errParam("Param batch must be a non-empty array of requests"), false)
	case len(ops) > maxBatch:
		return s.fail(errParam("Too many requests in batch message. Maximum batch size is %d", maxBatch), false)
	}
	referenced := map[string]bool{}
	for _, op := range ops {
		if op.DependsOn != "" {
			referenced[op.DependsOn] = true
		}
		for _, m := range resultRE.FindAllStringSubmatch(op.RelativeURL+op.Body, -1) {
			referenced[m[1]] = true
		}
	}
	withHeaders := q.Get("include_headers") != "false"
	done := map[string]result{} // completed named operations
	out := make([]*batchEntry, len(ops))
	for i, op := range ops {
		if ctx.Err() != nil {
			break
		}
		if op.DependsOn != "" {
			if r, ok := done[op.DependsOn]; !ok || r.status != http.StatusOK {
				continue
			}
		}
		rel, ok := substitute(op.RelativeURL, done)
		if !ok {
			continue
		}
		method := strings.ToUpper(op.Method)
		if method == "" {
			method = http.MethodGet
		}
		rel = versionPR.ReplaceAllString(strings.TrimLeft(rel, "/"), "")
		var r result
		if u, err := url.Parse(rel); err != nil {
			r = s.fail(errParam("Invalid relative_url %q", op.RelativeURL), false)
		} else {
			oq := u.Query()
			if op.Body != "" {
				if body, ok := substitute(op.Body, done); ok {
					if bq, err := url.ParseQuery(body); err == nil {
						for k, v := range bq {
							oq[k] = v
						}
					}
				}
			}
			if oq.Get("access_token") == "" {
				oq.Set("access_token", tok)
			}
			r = s.do(ctx, method, strings.Trim(u.Path, "/"), oq, base)
		}
		if r.injected {
			continue
		}
		if op.Name != "" {
			done[op.Name] = r
		}
		if r.status == http.StatusOK && referenced[op.Name] && !isFalse(op.OmitResponseOnSuccess) {
			continue // omitted by default, as Meta does for referenced operations
		}
		e := &batchEntry{Code: r.status, Body: string(r.body)}
		if withHeaders {
			e.Headers = headerList(r.header)
		}
		out[i] = e
	}
	return result{status: http.StatusOK, header: http.Header{"Content-Type": {contentTypeJSON}}, body: marshal(out)}
}

func isFalse(raw json.RawMessage) bool {
	v := strings.Trim(strings.TrimSpace(string(raw)), `"`)
	return v == "false"
}

func headerList(h http.Header) []batchHeader {
	keys := make([]string, 0, len(h))
	for k := range h {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var out []batchHeader
	for _, k := range keys {
		for _, v := range h[k] {
			out = append(out, batchHeader{Name: k, Value: v})
		}
	}
	return out
}

// substitute replaces {result=name:$.path} with the matches in the named operation's
// answer, comma separated. It fails when the operation did not succeed.
func substitute(s string, done map[string]result) (string, bool) {
	ok := true
	out := resultRE.ReplaceAllStringFunc(s, func(m string) string {
		sm := resultRE.FindStringSubmatch(m)
		r, found := done[sm[1]]
		if !found || r.status != http.StatusOK {
			ok = false
			return ""
		}
		var v any
		if err := json.Unmarshal(r.body, &v); err != nil {
			ok = false
			return ""
		}
		return strings.Join(jsonPath(v, sm[2]), ",")
	})
	return out, ok
}

// jsonPath evaluates the small JSONPath subset batches use: $.a.b, with * over arrays
// and objects.
func jsonPath(v any, path string) []string {
	path = strings.TrimPrefix(strings.TrimPrefix(path, "$"), ".")
	cur := []any{v}
	if path != "" {
		for _, seg := range strings.Split(path, ".") {
			var next []any
			for _, x := range cur {
				switch t := x.(type) {
				case map[string]any:
					if seg == "*" {
						keys := make([]string, 0, len(t))
						for k := range t {
							keys = append(keys, k)
						}
						sort.Strings(keys)
						for _, k := range keys {
							next = append(next, t[k])
						}
					} else if y, ok := t[seg]; ok {
						next = append(next, y)
					}
				case []any:
					if seg == "*" {
						next = append(next, t...)
					} else if n, err := strconv.Atoi(seg); err == nil && n >= 0 && n < len(t) {
						next = append(next, t[n])
					}
				}
			}
			cur = next
		}
	}
	var out []string
	for _, x := range cur {
		switch t := x.(type) {
		case string:
			out = append(out, t)
		case float64:
			out = append(out, strconv.FormatFloat(t, 'f', -1, 64))
		case bool:
			out = append(out, strconv.FormatBool(t))
		}
	}
	return out
}
