package graph

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"iter"
	"log/slog"
	"net/http"
	"net/url"
	"reflect"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/bytedance/sonic"
)

// Graph's time layout: an offset without a colon, which time.RFC3339 rejects.
const timeLayout = "2006-01-02T15:04:05-0700"

// Default field lists.
var (
	ConversationFields = []string{"id", "updated_time", "message_count", "unread_count", "snippet", "participants"}
	MessageFields      = []string{"id", "created_time", "from", "to", "message", "attachments"}
	accountFields      = "id,name,category,access_token,tasks"
)

// Party is a participant, sender or recipient: a PSID or a Page.
type Party struct {
	ID    string
	Name  string
	Email string
}

// Folder is a folder of a Page's conversations (spec 4.1).
type Folder string

// The folders. A conversations listing covers FolderInbox unless asked for another:
// threads moved to Done, Other or Spam are only in theirs.
const (
	FolderInbox Folder = "inbox"
	FolderOther Folder = "other"
	FolderDone  Folder = "page_done"
	FolderSpam  Folder = "spam"
)

// Folders returns every folder, the inbox first: what a complete backfill lists.
func Folders() []Folder { return []Folder{FolderInbox, FolderOther, FolderDone, FolderSpam} }

// Conversation is one thread of a Page's conversations listing.
type Conversation struct {
	ID           string // t_…
	Folder       Folder // when the fields asked for folder
	UpdatedTime  time.Time
	MessageCount int
	UnreadCount  int
	Snippet      string
	Participants []Party
	// Messages is the messages field expansion (messages.limit(n){…}), newest first, and
	// Expanded says the answer carried it.
	Messages []Message
	Expanded bool
}

// PSID returns the participant that is not the Page: the user of the thread.
func (c Conversation) PSID(pageID string) (Party, bool) {
	for _, p := range c.Participants {
		if p.ID != pageID {
			return p, true
		}
	}
	return Party{}, false
}

// Message is one message of a thread. Only a thread's 20 newest messages carry more
// than ID and CreatedTime.
type Message struct {
	ID          string // m_…
	CreatedTime time.Time
	From        Party
	To          []Party
	Text        string
	Attachments []Attachment
}

// Attachment is a message attachment; URLs expire.
type Attachment struct {
	ID         string
	MimeType   string
	Name       string
	Size       int64
	URL        string // image_data.url, video_data.url or file_url
	PreviewURL string
}

// Account is a Page a user token manages, with its Page access token.
type Account struct {
	ID          string
	Name        string
	Category    string
	AccessToken string
	Tasks       []string
}

// LogValue leaves the access token out of logs.
func (a Account) LogValue() slog.Value {
	return slog.GroupValue(slog.String("page_id", a.ID), slog.String("name", a.Name))
}

// Conversations lists a Page's Messenger threads of one folder ("" or FolderInbox: the
// inbox, Graph's default listing), most recently updated first, following paging.next
// until it is absent or a thread's updated_time is before since (zero: list all).
// fields nil means ConversationFields; updated_time is always asked for. An error is
// yielded last, wrapped with the Page id and the folder.
//
// Each request asks for PageSize threads, or fewer once Graph answered code 1 to a
// listing of this client ("Please reduce the amount of data you're asking for": a nested
// messages expansion too large for that many threads). Such an answer halves the limit,
// the request is made again at once, and the client's later listings start from the
// limit that worked.
func (c *Client) Conversations(ctx context.Context, pageID, token string, folder Folder, since time.Time, fields []string) iter.Seq2[Conversation, error] {
	if fields == nil {
		fields = ConversationFields
	}
	fs := strings.Join(fields, ",")
	if !hasField(fields, "updated_time") {
		fs += ",updated_time"
	}
	q := url.Values{"platform": {"messenger"}, "limit": {strconv.Itoa(int(c.pageSize.Load()))}, "fields": {fs},
		"date_format": {"U"}}
	if folder == "" {
		folder = FolderInbox
	}
	if folder != FolderInbox { // the inbox is the listing without folder=, as every integrator calls it
		q.Set("folder", string(folder))
	}
	return listing(ctx, c, kindConversations, token, url.PathEscape(pageID)+"/conversations", q, c.shrinkPageSize,
		func(v *wireConversation) (Conversation, bool) {
			conv := v.conversation()
			return conv, since.IsZero() || !conv.UpdatedTime.Before(since)
		},
		func(err error) error {
			return fmt.Errorf("list conversations of page %s folder %s: %w", pageID, folder, err)
		})
}

// shrinkPageSize halves the limit of the listing query q after Graph asked for less
// data, and lowers the client's page size to it. It reports false when the limit is 1
// already: the answer stands.
func (c *Client) shrinkPageSize(q url.Values) bool {
	n, err := strconv.Atoi(q.Get("limit"))
	if err != nil || n <= 1 {
		return false
	}
	n /= 2
	q.Set("limit", strconv.Itoa(n))
	for {
		cur := c.pageSize.Load()
		if cur <= int32(n) || c.pageSize.CompareAndSwap(cur, int32(n)) {
			break
		}
	}
	return true
}

// Messages lists a thread's messages newest first, limit per request (0: Graph's
// default of 25), until the end; stop the loop to read fewer. fields nil means
// MessageFields.
func (c *Client) Messages(ctx context.Context, threadID, token string, limit int, fields []string) iter.Seq2[Message, error] {
	if fields == nil {
		fields = MessageFields
	}
	q := url.Values{"fields": {strings.Join(fields, ",")}, "date_format": {"U"}}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	return listing(ctx, c, kindMessages, token, url.PathEscape(threadID)+"/messages", q, nil,
		func(v *wireMessage) (Message, bool) { return v.message(), true },
		func(err error) error { return fmt.Errorf("list messages of thread %s: %w", threadID, err) })
}

// Accounts lists the Pages of a user token (/me/accounts) with their Page tokens.
func (c *Client) Accounts(ctx context.Context, userToken string) iter.Seq2[Account, error] {
	q := url.Values{"fields": {accountFields}, "limit": {strconv.Itoa(c.cfg.PageSize)}}
	return listing(ctx, c, kindAccounts, userToken, "me/accounts", q, nil,
		func(v *wireAccount) (Account, bool) {
			return Account{ID: string(v.ID), Name: v.Name, Category: v.Category, AccessToken: v.AccessToken, Tasks: v.Tasks}, true
		},
		func(err error) error { return fmt.Errorf("list accounts: %w", err) })
}

type wireAccount struct {
	ID          ID       `json:"id"`
	Name        string   `json:"name"`
	Category    string   `json:"category"`
	AccessToken string   `json:"access_token"`
	Tasks       []string `json:"tasks"`
}

// page is one answer of a cursor-paged listing, items of wire type W.
type page[W any] struct {
	Data   []W `json:"data"`
	Paging struct {
		Next string `json:"next"`
	} `json:"paging"`
}

// listing walks a cursor-paged listing. Each answer is decoded in one pass into its
// items' wire type W; item turns one into a T and says whether to go on. shrink (nil:
// none) may lower the limit of the query after a code 1 answer (see Conversations). An
// error ends the walk and is yielded, wrapped by wrap.
func listing[T, W any](ctx context.Context, c *Client, kind, token, path string, q url.Values,
	shrink func(url.Values) bool, item func(*W) (T, bool), wrap func(error) error) iter.Seq2[T, error] {
	return func(yield func(T, error) bool) {
		var zero T
		for {
			req := request{kind: kind, method: http.MethodGet, path: path, query: q, token: token, calls: 1}
			if shrink != nil {
				req.shrink = func() bool { return shrink(q) }
			}
			resp, err := c.call(ctx, req)
			if err != nil {
				yield(zero, wrap(err))
				return
			}
			var p page[W]
			if err := decodeJSON(resp.body, &p); err != nil {
				yield(zero, wrap(fmt.Errorf("decode %s listing: %w", kind, err)))
				return
			}
			for i := range p.Data {
				v, more := item(&p.Data[i])
				if !more || !yield(v, nil) {
					return
				}
			}
			if p.Paging.Next == "" {
				return
			}
			if path, q, err = nextPage(p.Paging.Next); err != nil {
				yield(zero, wrap(err))
				return
			}
		}
	}
}

// decodeJSON decodes a Graph answer into v in one pass with bytedance/sonic, set to
// encoding/json's behaviour: a listing of 25 threads with their 20 messages each decodes
// in 0.62 ms, where encoding/json took 1.63 ms in one pass and 3.38 ms item by item as
// this client did (BenchmarkDecodeListing), and decoding had been nearly half of a
// backfill's CPU. Should sonic refuse the answer, encoding/json
// decides: its result is taken if it has one, and its error is the one returned, which
// names the field and type but never quotes the answer (sonic's errors show the JSON
// around the fault, which may hold message text or a paging link's token).
func decodeJSON(b []byte, v any) error {
	if sonic.ConfigStd.Unmarshal(b, v) == nil {
		return nil
	}
	reset(v)
	return json.Unmarshal(b, v)
}

// reset zeroes what v points to, so encoding/json starts from what sonic left.
func reset(v any) {
	rv := reflect.ValueOf(v)
	if rv.Kind() == reflect.Pointer && !rv.IsNil() {
		rv.Elem().SetZero()
	}
}

// nextPage turns a paging.next URL into a path under the version root and a query. The
// link's host is dropped, so the token only ever goes to BaseURL, and so is any
// access_token in the link: the token travels in a header.
func nextPage(next string) (string, url.Values, error) {
	u, err := url.Parse(next)
	if err != nil {
		// The link may carry the token: the error, which names it, goes to logs.
		return "", nil, fmt.Errorf("paging.next: %w", redactURLError(err))
	}
	path := strings.TrimLeft(u.EscapedPath(), "/")
	if v, rest, ok := strings.Cut(path, "/"); ok && validVersion(v) {
		path = strings.TrimLeft(rest, "/") // "v21.0//x" is x, not "/x" after the root's slash
	}
	q := u.Query()
	q.Del("access_token")
	return path, q, nil
}

func hasField(fields []string, name string) bool {
	for _, f := range fields {
		if f == name {
			return true
		}
	}
	return false
}

// ID is a Graph id, decoded from a JSON string or number (spec section 0): never a
// float64.
type ID string

func (id *ID) UnmarshalJSON(b []byte) error {
	// The decoder hands over a valid JSON value: a plain string or a number literal is
	// taken as it is, without a second decode (a backfill decodes millions of ids).
	if s, ok := plainString(b); ok {
		*id = ID(s)
		return nil
	}
	if len(b) > 0 && (b[0] == '-' || (b[0] >= '0' && b[0] <= '9')) {
		*id = ID(b)
		return nil
	}
	var n json.Number
	if err := json.Unmarshal(b, &n); err == nil {
		*id = ID(n.String())
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("id %s: want a string or a number", b)
	}
	*id = ID(s)
	return nil
}

// Time is a Graph time, decoded from "2006-01-02T15:04:05-0700", RFC 3339, or Unix
// seconds (date_format=U).
type Time time.Time

func (t *Time) UnmarshalJSON(b []byte) error {
	if sec, ok := plainInt(b); ok { // date_format=U, as listings ask
		*t = Time(time.Unix(sec, 0).UTC())
		return nil
	}
	if s, ok := plainString(b); ok {
		if v, err := time.Parse(timeLayout, s); err == nil {
			*t = Time(v.UTC())
			return nil
		}
	}
	var n json.Number
	if err := json.Unmarshal(b, &n); err == nil {
		sec, err := n.Int64()
		if err != nil {
			return fmt.Errorf("time %s: %w", b, err)
		}
		*t = Time(time.Unix(sec, 0).UTC())
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("time %s: want a string or a number", b)
	}
	v, err := time.Parse(timeLayout, s)
	if err != nil {
		if v, err = time.Parse(time.RFC3339, s); err != nil {
			return fmt.Errorf("time %q: want the form %s", s, timeLayout)
		}
	}
	*t = Time(v.UTC())
	return nil
}

// plainInt returns the value of a JSON integer of at most 18 digits, without sign or
// exponent; anything else takes the general path.
func plainInt(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// plainString returns the content of a JSON string without escapes, in valid UTF-8:
// a string that is not takes the general path, which replaces invalid bytes with U+FFFD
// as encoding/json does, and as sonic does before handing over the value (found by
// FuzzGraphResponse: an id of "\x98" decoded as itself or as U+FFFD, by decoder).
func plainString(b []byte) (string, bool) {
	n := len(b)
	if n < 2 || b[0] != '"' || b[n-1] != '"' || bytes.IndexByte(b[1:n-1], '\\') >= 0 || !utf8.Valid(b[1:n-1]) {
		return "", false
	}
	return string(b[1 : n-1]), true
}

type wireParty struct {
	ID    ID     `json:"id"`
	Name  string `json:"name"`
	Email string `json:"email"`
}

func parties(ps []wireParty) []Party {
	if len(ps) == 0 {
		return nil
	}
	out := make([]Party, len(ps))
	for i, p := range ps {
		out[i] = Party{ID: string(p.ID), Name: p.Name, Email: p.Email}
	}
	return out
}

// wireConversation is a conversation as Graph sends it: only the fields Conversation
// keeps are decoded, the rest is skipped.
type wireConversation struct {
	ID           ID     `json:"id"`
	Folder       Folder `json:"folder"`
	UpdatedTime  Time   `json:"updated_time"`
	MessageCount int    `json:"message_count"`
	UnreadCount  int    `json:"unread_count"`
	Snippet      string `json:"snippet"`
	Participants struct {
		Data []wireParty `json:"data"`
	} `json:"participants"`
	Messages *struct {
		Data []wireMessage `json:"data"`
	} `json:"messages"`
}

func (v *wireConversation) conversation() Conversation {
	c := Conversation{ID: string(v.ID), Folder: v.Folder, UpdatedTime: time.Time(v.UpdatedTime), MessageCount: v.MessageCount,
		UnreadCount: v.UnreadCount, Snippet: v.Snippet, Participants: parties(v.Participants.Data)}
	if v.Messages != nil {
		c.Expanded = true
		c.Messages = make([]Message, len(v.Messages.Data))
		for i := range v.Messages.Data {
			c.Messages[i] = v.Messages.Data[i].message()
		}
	}
	return c
}

// wireMessage is a message as Graph sends it.
type wireMessage struct {
	ID          ID        `json:"id"`
	CreatedTime Time      `json:"created_time"`
	From        wireParty `json:"from"`
	To          struct {
		Data []wireParty `json:"data"`
	} `json:"to"`
	Message     string `json:"message"`
	Attachments struct {
		Data []struct {
			ID        ID     `json:"id"`
			MimeType  string `json:"mime_type"`
			Name      string `json:"name"`
			Size      int64  `json:"size"`
			FileURL   string `json:"file_url"`
			ImageData struct {
				URL        string `json:"url"`
				PreviewURL string `json:"preview_url"`
			} `json:"image_data"`
			VideoData struct {
				URL        string `json:"url"`
				PreviewURL string `json:"preview_url"`
			} `json:"video_data"`
		} `json:"data"`
	} `json:"attachments"`
}

func (v *wireMessage) message() Message {
	m := Message{ID: string(v.ID), CreatedTime: time.Time(v.CreatedTime), Text: v.Message, To: parties(v.To.Data)}
	if v.From.ID != "" {
		m.From = Party{ID: string(v.From.ID), Name: v.From.Name, Email: v.From.Email}
	}
	for _, a := range v.Attachments.Data {
		at := Attachment{ID: string(a.ID), MimeType: a.MimeType, Name: a.Name, Size: a.Size,
			URL: a.ImageData.URL, PreviewURL: a.ImageData.PreviewURL}
		if at.URL == "" {
			at.URL, at.PreviewURL = a.VideoData.URL, a.VideoData.PreviewURL
		}
		if at.URL == "" {
			at.URL = a.FileURL
		}
		m.Attachments = append(m.Attachments, at)
	}
	return m
}

// decodeConversation decodes one conversation object, with its messages expansion.
func decodeConversation(raw json.RawMessage) (Conversation, error) {
	var v wireConversation
	if err := decodeJSON(raw, &v); err != nil {
		return Conversation{}, fmt.Errorf("decode conversation: %w", err)
	}
	return v.conversation(), nil
}

// DecodeMessage decodes one message object as Graph returns it, alone or nested in a
// conversation's messages expansion.
func DecodeMessage(raw json.RawMessage) (Message, error) {
	var v wireMessage
	if err := decodeJSON(raw, &v); err != nil {
		return Message{}, fmt.Errorf("decode message: %w", err)
	}
	return v.message(), nil
}
