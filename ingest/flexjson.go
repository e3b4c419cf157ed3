package ingest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"time"
)

// Meta sends some scalars in more than one JSON form; these types read every form seen.

// flexID is an id Meta sends as a JSON string or a JSON number (app_id, sticker_id and, in
// older samples, page ids): decoded through json.Number, never float64.
type flexID string

func (f *flexID) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) == 0 || bytes.Equal(b, []byte("null")) {
		*f = ""
		return nil
	}
	if b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*f = flexID(s)
		return nil
	}
	var n json.Number
	if err := json.Unmarshal(b, &n); err != nil {
		return fmt.Errorf("id %s is neither a string nor a number", b)
	}
	*f = flexID(n.String())
	return nil
}

// flexTime is a Meta timestamp: epoch milliseconds for messaging events, seconds for
// changes entries, sometimes a quoted string of either. Seconds and milliseconds are told
// apart by magnitude. A value that does not parse is left zero (the caller falls back to
// entry.time, then to the arrival time) rather than failing the request.
type flexTime time.Time

// secondsLimit: below it a number is seconds (1e11 s is the year 5138; 1e11 ms is 1973).
const secondsLimit = 1e11

func (f *flexTime) UnmarshalJSON(b []byte) error {
	b = bytes.Trim(bytes.TrimSpace(b), `"`)
	*f = flexTime(parseEpoch(string(b)))
	return nil
}

// parseEpoch reads a timestamp; one outside 1971..2999 is treated as absent.
func parseEpoch(s string) time.Time {
	t := parseEpochRaw(s)
	if y := t.Year(); y < 1971 || y > 2999 {
		return time.Time{}
	}
	return t
}

func parseEpochRaw(s string) time.Time {
	if s == "" || s == "null" {
		return time.Time{}
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		if n <= 0 {
			return time.Time{}
		}
		if n < secondsLimit {
			return time.Unix(n, 0).UTC()
		}
		return time.UnixMilli(n).UTC()
	}
	if f, err := strconv.ParseFloat(s, 64); err == nil && f > 0 {
		if f < secondsLimit {
			return time.UnixMilli(int64(f * 1000)).UTC()
		}
		return time.UnixMilli(int64(f)).UTC()
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t.UTC()
	}
	return time.Time{}
}

func (f flexTime) t() time.Time { return time.Time(f) }

// flexInt is an int Meta sometimes quotes (num_edit in the doc sample).
type flexInt int

func (f *flexInt) UnmarshalJSON(b []byte) error {
	s := string(bytes.Trim(bytes.TrimSpace(b), `"`))
	if s == "" || s == "null" {
		*f = 0
		return nil
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		return fmt.Errorf("%q is not an integer", s)
	}
	*f = flexInt(n)
	return nil
}
