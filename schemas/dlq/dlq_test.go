package dlq

import (
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
