package ingest

// Every payload shape of docs/meta-platform.md (section 2), as Meta sends it. They seed
// the parser's table tests and its fuzz test.
var specPayloads = map[string]string{
	"message text": `{"object":"page","entry":[{"id":"104400000000001","time":1717000000456,
  "messaging":[{"sender":{"id":"7310000000000021"},"recipient":{"id":"104400000000001"},
    "timestamp":1717000000123,
    "message":{"mid":"m_Zk3x9Q","text":"Is the blue one in stock?"}}]}]}`,

	"message attachments and sticker twice": `{"object":"page","entry":[{"id":"104400000000001","time":1717000000456,
  "messaging":[{"sender":{"id":"7310000000000021"},"recipient":{"id":"104400000000001"},"timestamp":1717000000200,
    "message":{"mid":"m_att1","text":"look https://example.com","attachments":[
      {"type":"image","payload":{"url":"https://cdn.example/a.png","sticker_id":369239263222822}},
      {"type":"sticker","payload":{"url":"https://cdn.example/a.png","sticker_id":369239263222822}},
      {"type":"fallback","payload":null,"title":"A link","url":"https://example.com"},
      {"type":"reel","payload":{"url":"https://cdn.example/r.mp4","title":"Reel","reel_video_id":123456789012}},
      {"type":"appointment_booking","payload":{"booking_id":"b1","status":"confirmed","start_time":1717003600,"end_time":1717007200,"timezone":"Europe/Berlin"}}],
      "quick_reply":{"payload":"SIZE_M"},"reply_to":{"mid":"m_prev","is_self_reply":false},
      "referral":{"source":"ADS","type":"OPEN_THREAD","ref":"summer","ad_id":"6000","ads_context_data":{"ad_title":"Summer","post_id":"77"}},
      "commands":[{"name":"order"}],"seq":12}}]}]}`,

	"echo numeric app id": `{"object":"page","entry":[{"id":"104400000000001","time":1717000009100,
  "messaging":[{"sender":{"id":"104400000000001"},"recipient":{"id":"7310000000000021"},
 "timestamp":1717000009001,
 "message":{"is_echo":true,"app_id":880000000000007,"metadata":"ticket-4411",
            "mid":"m_Yh2kP0","text":"Yes, size M left."}}]}]}`,

	"echo fallback payload null": `{"object":"page","entry":[{"id":"104400000000001","time":1717000009100,
  "messaging":[{"sender":{"id":"104400000000001"},"recipient":{"id":"7310000000000021"},"timestamp":1717000009002,
 "message":{"is_echo":true,"app_id":263902037430900,"mid":"m_fb1",
   "attachments":[{"type":"fallback","payload":null,"title":"Shared link","url":"https://example.com/x"}]}}]}]}`,

	"delivery without mids or timestamp": `{"object":"page","entry":[{"id":"104400000000001","time":1717000010000,
  "messaging":[{"sender":{"id":"7310000000000021"},"recipient":{"id":"104400000000001"},
  "delivery":{"watermark":1717000009500}}]}]}`,

	"delivery with mids": `{"object":"page","entry":[{"id":"104400000000001","time":1717000010000,
  "messaging":[{"sender":{"id":"7310000000000021"},"recipient":{"id":"104400000000001"},"timestamp":1717000010001,
  "delivery":{"mids":["m_Yh2kP0","mid.1457764197618:41d102a3e1ae206a38"],"watermark":1717000009500,"seq":37}}]}]}`,

	"read": `{"object":"page","entry":[{"id":"104400000000001","time":1717000011000,
  "messaging":[{"sender":{"id":"7310000000000021"},"recipient":{"id":"104400000000001"},"timestamp":1717000011000,
  "read":{"watermark":1717000010500}}]}]}`,

	"reaction": `{"object":"page","entry":[{"id":"104400000000001","time":1717000012000,
  "messaging":[{"sender":{"id":"7310000000000021"},"recipient":{"id":"104400000000001"},"timestamp":1717000012000,
  "reaction":{"mid":"m_Yh2kP0","action":"react","reaction":"love","emoji":"\u2764\ufe0f"}}]}]}`,

	"unreact without emoji": `{"object":"page","entry":[{"id":"104400000000001","time":1717000013000,
  "messaging":[{"sender":{"id":"7310000000000021"},"recipient":{"id":"104400000000001"},"timestamp":1717000013000,
  "reaction":{"mid":"m_Yh2kP0","action":"unreact"}}]}]}`,

	"postback with referral": `{"object":"page","entry":[{"id":"104400000000001","time":1717000014000,
  "messaging":[{"sender":{"id":"7310000000000021"},"recipient":{"id":"104400000000001"},"timestamp":1717000014000,
  "postback":{"title":"Get Started","payload":"GET_STARTED","mid":"m_pb1",
    "referral":{"ref":"qr-7","source":"SHORTLINK","type":"OPEN_THREAD"}}}]}]}`,

	"postback string timestamp in seconds": `{"object":"page","entry":[{"id":"104400000000001","time":"1717000015",
  "messaging":[{"sender":{"id":"7310000000000021"},"recipient":{"id":"104400000000001"},"timestamp":"1717000015",
  "postback":{"title":"Talk to us","mid":"m_pb2"}}]}]}`,

	"message edit quoted num_edit": `{"object":"page","entry":[{"id":"104400000000001","time":1717000016000,
  "messaging":[{"sender":{"id":"7310000000000021"},"recipient":{"id":"104400000000001"},"timestamp":1717000016000,
  "message_edit":{"mid":"m_Zk3x9Q","text":"Is the green one in stock?","num_edit":"1"}}]}]}`,

	"referral": `{"object":"page","entry":[{"id":"104400000000001","time":1717000017000,
  "messaging":[{"sender":{"id":"7310000000000021"},"recipient":{"id":"104400000000001"},"timestamp":1717000017000,
  "referral":{"ref":"promo","source":"ADS","type":"OPEN_THREAD","ad_id":6045246247433,"referer_uri":"https://m.me/shop",
    "ads_context_data":{"ad_title":"Promo","photo_url":"https://cdn.example/p.jpg"}}}]}]}`,

	"optin marketing": `{"object":"page","entry":[{"id":"104400000000001","time":1717000018000,
  "messaging":[{"sender":{"id":"7310000000000021"},"recipient":{"id":"104400000000001"},"timestamp":1717000018000,
  "optin":{"type":"notification_messages","payload":"weekly","notification_messages_token":"tok-secret",
    "token_expiry_timestamp":1719600000000,"notification_messages_status":"RESUME_NOTIFICATIONS","user_token_status":"REFRESHED","title":"Weekly deals"}}]}]}`,

	"optin plugin user_ref": `{"object":"page","entry":[{"id":"104400000000001","time":1717000019000,
  "messaging":[{"sender":{"user_ref":"ur-5577"},"recipient":{"id":"104400000000001"},"timestamp":1717000019000,
  "optin":{"ref":"checkbox-1","user_ref":"ur-5577"}}]}]}`,

	"standby message and read": `{"object":"page","entry":[{"id":"104400000000001","time":1717000020000,
  "standby":[{"sender":{"id":"7310000000000021"},"recipient":{"id":"104400000000001"},"timestamp":1717000020000,
     "message":{"mid":"m_sb1","text":"anyone there?"}},
    {"sender":{"id":"7310000000000021"},"recipient":{"id":"104400000000001"},"timestamp":1717000020001,
     "read":{"watermark":1717000020001}},
    {"sender":{"id":"7310000000000021"},"recipient":{"id":"104400000000001"},"timestamp":1717000020002,
     "postback":{"title":"Menu","mid":"m_sb2"}}]}]}`,

	"changes conversations seconds": `{"object":"page","entry":[{"id":"104400000000001","time":1717000050,
  "changes":[{"field":"conversations",
    "value":{"page_id":"104400000000001","thread_id":"t_5520000000000031"}}]}]}`,

	"changes thread_key": `{"object":"page","entry":[{"id":"104400000000001","time":1717000051,
  "changes":[{"field":"conversations","value":{"page_id":104400000000001,"thread_key":"t_key_9","thread_id":"t_5520000000000032"}}]}]}`,

	"numeric page id, old mid": `{"object":"page","entry":[{"id":104400000000001,"time":1717000060000,
  "messaging":[{"sender":{"id":"7310000000000021"},"recipient":{"id":104400000000001},"timestamp":1717000060000,
  "message":{"mid":"mid.1457764197618:41d102a3e1ae206a38","text":"old style"}}]}]}`,

	"unknown kind": `{"object":"page","entry":[{"id":"104400000000001","time":1717000070000,
  "messaging":[{"sender":{"id":"7310000000000021"},"recipient":{"id":"104400000000001"},"timestamp":1717000070000,
  "pass_thread_control":{"new_owner_app_id":"123","metadata":"to human"}}]}]}`,

	"several entries and items": `{"object":"page","entry":[
  {"id":"104400000000001","time":1717000080000,"messaging":[
    {"sender":{"id":"7310000000000021"},"recipient":{"id":"104400000000001"},"timestamp":1717000080000,"message":{"mid":"m_a1","text":"a"}},
    {"sender":{"id":"7310000000000022"},"recipient":{"id":"104400000000001"},"timestamp":1717000080001,"message":{"mid":"m_a2","text":"b"}}]},
  {"id":"104400000000002","time":1717000080002,"messaging":[
    {"sender":{"id":"7310000000000099"},"recipient":{"id":"104400000000002"},"timestamp":1717000080002,"message":{"mid":"m_b1","text":"c"}}]}]}`,

	"unicode escaped text": `{"object":"page","entry":[{"id":"104400000000001","time":1717000090000,
  "messaging":[{"sender":{"id":"7310000000000021"},"recipient":{"id":"104400000000001"},"timestamp":1717000090000,
  "message":{"mid":"m_uni","text":"Gr\u00fc\u00dfe \ud83d\udc4b"}}]}]}`,
}
