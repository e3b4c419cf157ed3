package dlq

import (
	"errors"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/convsync/convsync/schemas"
)

func TestReadTellsDeadLettersFromOtherRecords(t *testing.T) {
	if _, ok := Read(&kgo.Record{Value: []byte("{}")}); ok {
		t.Error("Read of a record without dlq headers is ok, want not")
	}
	bad := New(&kgo.Record{Topic: "e", Partition: 1, Offset: 2}, "dlq", CategoryDecode, &schemas.ValidationError{Reason: "not JSON"}, time.Now())
	for i := range bad.Headers {
		if bad.Headers[i].Key == HeaderSourceOffset {
			bad.Headers[i].Value = []byte("two")
		}
	}
	if _, ok := Read(bad); ok {
		t.Error("Read of a record whose source offset is not a number is ok, want not")
	}
	// A dead letter replayed into the events topic and dead-lettered again: the newest
	// headers count.
	first := New(&kgo.Record{Topic: "events", Partition: 1, Offset: 2}, "dlq", CategoryDecode, &schemas.ValidationError{Reason: "not JSON"}, time.Now())
	first.Topic, first.Partition, first.Offset = "events", 0, 9
	again := New(first, "dlq", CategorySchema, &schemas.ValidationError{Field: "data.mid", Reason: "missing property"}, time.Now())
	info, ok := Read(again)
	if !ok || info.SourceOffset != 9 || info.SourcePartition != 0 || info.Category != CategorySchema || info.Field != "data.mid" {
		t.Errorf("Read of a twice dead-lettered record = %+v, %v, want the second dead-lettering's", info, ok)
	}
}

func TestTruncateMakesTheRecordFitAndSaysSo(t *testing.T) {
	src := &kgo.Record{Topic: "events", Key: []byte("page"), Value: make([]byte, 5000), Headers: []kgo.RecordHeader{{Key: "h", Value: []byte("v")}}}
	r := New(src, "dlq", CategoryTooLarge, errors.New("too large"), time.Now())
	if Truncate(r, 10_000) {
		t.Fatal("Truncate of a record that fits cut it, want it whole")
	}
	if !Truncate(r, 2000) {
		t.Fatal("Truncate of a record over the limit cut nothing")
	}
	if Size(r) > 2000 || len(r.Value) == 0 {
		t.Errorf("after Truncate(2000) the record takes %d bytes with a value of %d, want at most 2000 and some of the value", Size(r), len(r.Value))
	}
	info, ok := Read(r)
	if !ok || info.TruncatedFrom != 5000 || info.Category != CategoryTooLarge {
		t.Errorf("Read(truncated) = %+v, %v; want TruncatedFrom 5000 and category too_large", info, ok)
	}
}
