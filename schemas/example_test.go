package schemas_test

import (
	"fmt"
	"time"

	"github.com/convsync/convsync/schemas"
)

func ExampleEncode() {
	sent := time.Date(2024, 5, 29, 16, 40, 11, 123_000_000, time.UTC)
	msg := schemas.Message{
		PageID: "104400000000001",
		PSID:   "7310000000000021",
		MID:    "mid.$cAAJsujCd2ORj", // an old-style mid: normalised to m_…, the original kept
		Text:   "Is the blue one in stock?",
		SentAt: sent,
	}
	value, env, err := schemas.Encode(schemas.SourceWebhook, sent.Add(time.Second), msg)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("key %s\n%s\n", env.PageID, value)
	// Output:
	// key 104400000000001
	// {"specversion":"1.0","id":"2c8ff152-20ea-539b-be8e-a9061a7f22ff","source":"/convsync/ingest/webhook","type":"convsync.messenger.message.v1","time":"2024-05-29T16:40:11.123Z","subject":"pages/104400000000001/users/7310000000000021","datacontenttype":"application/json","pageid":"104400000000001","receivedat":"2024-05-29T16:40:12.123Z","data":{"page_id":"104400000000001","psid":"7310000000000021","mid":"m_mid.$cAAJsujCd2ORj","raw_mid":"mid.$cAAJsujCd2ORj","direction":"inbound","text":"Is the blue one in stock?","sent_at":"2024-05-29T16:40:11.123Z"}}
}

func ExampleCodec_Decode() {
	codec, err := schemas.NewCodec()
	if err != nil {
		fmt.Println(err)
		return
	}
	record := []byte(`{"specversion":"1.0","id":"c61f3bd7-d152-570e-9ec8-9c3e3e2ac20e","source":"/jobs/import",
		"type":"convsync.messenger.read.v1","time":"2024-05-29T16:40:23.123Z","datacontenttype":"application/json",
		"pageid":"104400000000001","receivedat":"2024-05-29T16:40:24Z",
		"data":{"page_id":"104400000000001","psid":"7310000000000021","watermark":"2024-05-29T16:40:23.123Z"}}`)
	_, data, err := codec.Decode(record)
	if err != nil {
		fmt.Println("to the DLQ:", err)
		return
	}
	switch d := data.(type) {
	case schemas.Read:
		fmt.Println("read up to", d.Watermark.Format(time.RFC3339Nano), "by", d.PSID)
	case schemas.Message, schemas.Echo, schemas.MessageObserved:
		fmt.Println("a message")
	}

	_, _, err = codec.Decode([]byte(`{"specversion":"1.0"}`))
	fmt.Println("to the DLQ:", err)
	// Output:
	// read up to 2024-05-29T16:40:23.123Z by 7310000000000021
	// to the DLQ: data: missing property (also missing: "datacontenttype", "id", "pageid", "receivedat", "source", "time", "type")
}
