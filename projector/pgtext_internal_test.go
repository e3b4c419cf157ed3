package projector

import (
	"testing"
	"time"

	"github.com/convsync/convsync/internal/testenv"
)

var jsonTextCases = []struct{ in, want string }{
	{`{"a":"plain"}`, `{"a":"plain"}`},
	{`{"a":"\ud83d broken half"}`, `{"a":"\ufffd broken half"}`},
	{`{"a":"\udc00 low first"}`, `{"a":"\ufffd low first"}`},
	{`{"a":"\ud83d\ude00 a pair"}`, `{"a":"\ud83d\ude00 a pair"}`},
	{`{"a":"\ud83d\u0041 high then not low"}`, `{"a":"\ufffd\u0041 high then not low"}`},
	{`{"a":"\ud83d"}`, `{"a":"\ufffd"}`},
	{`{"a":"nul \u0000 here"}`, `{"a":"nul \ufffd here"}`},
	{`{"a":"\\u0000 is text"}`, `{"a":"\\u0000 is text"}`},
	{`{"a":"\\\ud83d"}`, `{"a":"\\\ufffd"}`},
	{`{"\ud83d":1}`, `{"\ufffd":1}`},
	{"{\"a\":\"bad \xff byte\"}", "{\"a\":\"bad \uFFFD byte\"}"},
	{`[1,"\u00e9"]`, `[1,"\u00e9"]`},
}

func TestJSONTextMakesWhatJSONBRefusesValid(t *testing.T) {
	for _, tt := range jsonTextCases {
		if got := jsonText([]byte(tt.in)); got != tt.want {
			t.Errorf("jsonText(%s) = %s, want %s", tt.in, got, tt.want)
		}
	}
	if got := pgText("a\x00b\xffc"); got != "a\uFFFDb\uFFFDc" {
		t.Errorf("pgText(a NUL b 0xff c) = %q, want NUL and the bad byte as U+FFFD", got)
	}
}

// Postgres is the judge: every input that jsonb refuses is accepted once it went through
// jsonText, and means the same where it was valid.
func TestJSONTextIsAcceptedByPostgres(t *testing.T) {
	pool, _ := testenv.Postgres(t)
	ctx := testenv.Context(t, time.Minute)
	refused := 0
	for _, tt := range jsonTextCases {
		var raw string
		if err := pool.QueryRow(ctx, `SELECT $1::text::jsonb::text`, tt.in).Scan(&raw); err != nil {
			refused++
		}
		var got, want string
		if err := pool.QueryRow(ctx, `SELECT $1::text::jsonb::text, $2::text::jsonb::text`, jsonText([]byte(tt.in)), tt.want).Scan(&got, &want); err != nil {
			t.Errorf("Postgres refuses jsonText(%s) = %s: %v", tt.in, jsonText([]byte(tt.in)), err)
			continue
		}
		if got != want {
			t.Errorf("jsonb of jsonText(%s) = %s, want %s", tt.in, got, want)
		}
	}
	if refused < 5 {
		t.Errorf("Postgres refuses %d of the raw cases, want at least 5: the cases no longer test what jsonb refuses", refused)
	}
	var s string
	if err := pool.QueryRow(ctx, `SELECT $1::text`, pgText("a\x00b")).Scan(&s); err != nil {
		t.Errorf("Postgres refuses pgText(a NUL b): %v", err)
	}
}
