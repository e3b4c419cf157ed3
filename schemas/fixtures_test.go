package schemas

import (
	"encoding/json"
	"time"
)

const (
	testPage = "104400000000001"
	testPSID = "7310000000000021"
)

var (
	// testTime is when the test facts happened; testReceived is when they arrived.
	testTime     = time.Date(2024, 5, 29, 16, 40, 11, 123_000_000, time.UTC)
	testReceived = testTime.Add(1250 * time.Millisecond)
)

// example is one representative event per type: the golden files, the round trips and
// the benchmarks all start from these.
type example struct {
	source string
	data   Data
}

func examples() []example {
	at := func(ms int) time.Time { return testTime.Add(time.Duration(ms) * time.Millisecond) }
	return []example{
		{SourceWebhook, Message{
			PageID: testPage, PSID: testPSID, MID: "m_Zk3x9Q",
			Text: "Is the blue one in stock?",
			Attachments: []Attachment{
				{Type: "image", URL: "https://cdn.example.com/a.jpg", Payload: json.RawMessage(`{"url":"https://cdn.example.com/a.jpg"}`)},
				{Type: "fallback", Title: "Blue Shop", URL: "https://example.com/p/1", Payload: json.RawMessage(`null`)},
			},
			QuickReplyPayload: "STOCK_BLUE",
			ReplyToMID:        "m_Yh2kP0",
			Referral:          json.RawMessage(`{"source":"ADS","type":"OPEN_THREAD","ad_id":"6045000000001"}`),
			SentAt:            testTime,
		}},
		{SourceWebhook, Echo{
			PageID: testPage, PSID: testPSID, MID: "m_Yh2kP0",
			Text: "Yes, size M left.", AppID: "880000000000007", Metadata: "ticket-4411",
			SentAt: at(9001),
		}},
		{SourceWebhook, Delivery{
			PageID: testPage, PSID: testPSID, MIDs: []string{"m_Yh2kP0", "mid.$cAAJsujCd2ORj"}, Watermark: at(10_000),
		}},
		{SourceWebhook, Read{PageID: testPage, PSID: testPSID, Watermark: at(12_000)}},
		{SourceWebhook, Reaction{
			PageID: testPage, PSID: testPSID, MID: "m_Yh2kP0", Action: React, Reaction: "love", Emoji: "❤️", ReactedAt: at(13_000),
		}},
		{SourceWebhook, Edit{
			PageID: testPage, PSID: testPSID, MID: "m_Zk3x9Q", Text: "Is the green one in stock?", NumEdit: 1, EditedAt: at(14_000),
		}},
		{SourceWebhook, Postback{
			PageID: testPage, PSID: testPSID, MID: "m_Pb7Qw", Title: "Talk to us", Payload: "GET_STARTED",
			Referral: json.RawMessage(`{"ref":"spring","source":"SHORTLINK","type":"OPEN_THREAD"}`), OccurredAt: at(15_000),
		}},
		{SourceWebhook, Referral{
			PageID: testPage, PSID: testPSID, Source: "SHORTLINK", Type: "OPEN_THREAD", Ref: "spring",
			RefererURI: "https://m.me/blueshop?ref=spring",
			Raw:        json.RawMessage(`{"ref":"spring","referer_uri":"https://m.me/blueshop?ref=spring","source":"SHORTLINK","type":"OPEN_THREAD"}`),
			OccurredAt: at(16_000),
		}},
		{SourceWebhook, Optin{
			PageID: testPage, PSID: testPSID, Type: "notification_messages", Payload: "WEEKLY",
			Raw:        json.RawMessage(`{"type":"notification_messages","payload":"WEEKLY","notification_messages_token":"tok-1"}`),
			OccurredAt: at(17_000),
		}},
		{SourceWebhook, ConversationChanged{PageID: testPage, ThreadID: "t_5520000000000031", ChangedAt: at(18_000)}},
		{SourceWebhook, Unknown{
			PageID: testPage, Channel: ChannelMessaging, Kind: "policy_enforcement",
			Raw:        json.RawMessage(`{"recipient":{"id":"104400000000001"},"timestamp":1717000019123,"policy_enforcement":{"action":"block","reason":"spam"}}`),
			OccurredAt: at(19_000),
		}},
		{SourceBackfill, ConversationObserved{
			PageID: testPage, PSID: testPSID, ThreadID: "t_5520000000000031", ParticipantName: "Ada K.",
			Snippet: "Yes, size M left.", UpdatedTime: testTime.Truncate(time.Second), MessageCount: 14, UnreadCount: 0,
			ObservedAt: at(60_000),
		}},
		{SourceBackfill, MessageObserved{
			PageID: testPage, PSID: testPSID, MID: "m_Yh2kP0", Direction: Outbound, Text: "Yes, size M left.",
			SentAt: at(9000),
		}},
		{SourceBackfill, PageSynced{PageID: testPage, Name: "Blue Shop", SyncedAt: at(61_000)}},
	}
}
