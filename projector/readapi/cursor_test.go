package readapi_test

import (
	"encoding/base64"
	"testing"

	"github.com/convsync/convsync/internal/cache"
)

// TestGarbageCursorsAreBadRequests: a cursor the API never returned is the client's
// mistake, a 400, never a 500. Found writing FuzzReadAPIQuery, whose checkKey states it:
// a cursor whose key holds NUL (JSON "\u0000") decoded, went to Postgres as a text
// parameter, was refused there (SQLSTATE 22021) and answered 500.
func TestGarbageCursorsAreBadRequests(t *testing.T) {
	t.Parallel()
	e := setup(t, cache.NewMemory(1000), "m:")
	page := e.pages[0]
	psid := firstConversation(e.refs, page)
	cursor := func(json string) string { return base64.RawURLEncoding.EncodeToString([]byte(json)) }
	tests := []struct{ path, cursor string }{
		{"/v1/pages/" + page + "/conversations", cursor(`{"p":"\u0000"}`)},
		{"/v1/pages/" + page + "/conversations", cursor(`{"p":"1\u0000","t":"2024-05-29T16:40:11.123Z"}`)},
		{"/v1/pages/" + page + "/conversations/" + psid, cursor(`{"m":"m_\u0000"}`)},
		{"/v1/pages/" + page + "/conversations/" + psid, cursor(`{"m":"\u0000","t":"2024-05-29T16:40:11Z"}`)},
		{"/v1/pages/" + page + "/conversations", cursor(`{"p":""}`)},
		{"/v1/pages/" + page + "/conversations", cursor(`{"p":"1","t":"yesterday"}`)},
		{"/v1/pages/" + page + "/conversations/" + psid, cursor(`{"p":"1"}`)},
		{"/v1/pages/" + page + "/conversations", "%00"},
	}
	for _, tt := range tests {
		if r := e.get(t, tt.path+"?cursor="+tt.cursor); r.status != 400 {
			t.Errorf("GET %s?cursor=%s = %d %s, want 400", tt.path, tt.cursor, r.status, r.body)
		}
	}
}
