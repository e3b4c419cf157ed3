package ingest

import (
	"testing"

	"github.com/convsync/convsync/schemas"
)

// FuzzParse: whatever the body, Parse does not panic, and when it accepts a body every
// event it returns encodes into an envelope that validates against its schema: the
// handler never answers 200 for something the processor would reject, nor 5xx for
// something it cannot read. Seeded with every payload shape of the spec.
// `make fuzz FUZZTIME=5m` runs it longer.
func FuzzParse(f *testing.F) {
	for _, p := range specPayloads {
		f.Add([]byte(p))
	}
	f.Add([]byte(`{"object":"page","entry":[{"messaging":[{"sender":{"id":"1"},"recipient":{"id":""},"message":{"mid":"m"}}]}]}`))
	codec, err := schemas.NewCodec()
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		evs, err := Parse(body, arrival)
		if err != nil {
			return
		}
		for _, d := range evs {
			b, _, err := schemas.Encode(schemas.SourceWebhook, arrival, d)
			if err != nil {
				t.Fatalf("Parse accepted %q but event %T does not encode: %v", body, d, err)
			}
			if err := codec.Validate(b); err != nil {
				t.Fatalf("Parse accepted %q but event %s does not validate: %v\n%s", body, d.EventType(), err, b)
			}
		}
	})
}
